package config

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// FieldError is one invalid value.
type FieldError struct {
	// Path is the field's path, like "upstreams[0].peers[1].addr".
	Path string
	// Line is the line of the field in the document, 0 if unknown.
	Line int
	// Source names where a value set outside the document came from, like
	// "flag --name" or "PINGORA_NAME" ("" for the document).
	Source string
	Msg    string
}

// Errors is the list of problems found in one document.
type Errors struct {
	// File names the document ("" for an unnamed one, such as a request body).
	File string
	List []FieldError
}

func (e *Errors) Error() string {
	var b strings.Builder
	for i, fe := range e.List {
		if i > 0 {
			b.WriteByte('\n')
		}
		switch {
		case fe.Source != "":
			b.WriteString(fe.Source)
			b.WriteString(": ")
		case e.File != "" && fe.Line > 0:
			b.WriteString(e.File + ":" + strconv.Itoa(fe.Line) + ": ")
		case e.File != "":
			b.WriteString(e.File + ": ")
		case fe.Line > 0:
			b.WriteString(strconv.Itoa(fe.Line) + ": ")
		}
		if fe.Path != "" {
			b.WriteString(fe.Path)
			b.WriteString(": ")
		}
		b.WriteString(fe.Msg)
	}
	return b.String()
}

// errs collects FieldErrors during validation.
type errs struct{ list []FieldError }

func (e *errs) add(path, format string, args ...any) {
	e.list = append(e.list, FieldError{Path: path, Msg: fmt.Sprintf(format, args...)})
}

// result returns nil or an *Errors with lines resolved against root.
func (e *errs) result(file string, root *yaml.Node) error {
	return e.resultFrom(file, root, nil)
}

// resultFrom is result where from maps fields (and everything under them)
// set outside the document to their source, named instead of a line.
func (e *errs) resultFrom(file string, root *yaml.Node, from map[string]string) error {
	if len(e.list) == 0 {
		return nil
	}
	for i := range e.list {
		fe := &e.list[i]
		if fe.Source = sourceOf(from, fe.Path); fe.Source == "" {
			fe.Line = lineOf(root, fe.Path)
		}
	}
	inDocumentOrder(e.list)
	return &Errors{File: file, List: e.list}
}

// inDocumentOrder sorts problems as an operator reads the document: by
// line, those of the same line (a flow mapping) in the order found, and
// the values set outside the document (the environment, flags) after
// them. Validation runs field by field and then across fields (a peer's
// weight is checked after every route), so its order is not the file's.
func inDocumentOrder(list []FieldError) {
	slices.SortStableFunc(list, func(a, b FieldError) int {
		if c := cmp.Compare(b2i(a.Source != ""), b2i(b.Source != "")); c != 0 {
			return c
		}
		return cmp.Compare(a.Line, b.Line)
	})
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// sourceOf returns the source of path: that of the field itself or of the
// nearest enclosing one ("listeners" for "listeners[0].addr").
func sourceOf(from map[string]string, path string) string {
	best := ""
	for k := range from {
		if (path == k || strings.HasPrefix(path, k+"[") || strings.HasPrefix(path, k+".")) && len(k) > len(best) {
			best = k
		}
	}
	if best == "" {
		return ""
	}
	return from[best]
}

// lineOf finds the line of path in a decoded YAML document: the deepest
// node of the path that exists (so a missing field points at its parent).
func lineOf(root *yaml.Node, path string) int {
	if root == nil {
		return 0
	}
	n := root
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	line := n.Line
	for _, seg := range splitPath(path) {
		next, keyLine := step(n, seg)
		if next == nil {
			if keyLine > 0 {
				return keyLine
			}
			return line
		}
		n, line = next, next.Line
		if keyLine > 0 {
			line = keyLine
		}
	}
	return line
}

// splitPath turns "a[0].b" into ["a", "[0]", "b"].
func splitPath(p string) []string {
	var out []string
	for _, part := range strings.Split(p, ".") {
		for part != "" {
			i := strings.IndexByte(part, '[')
			switch {
			case i < 0:
				out = append(out, part)
				part = ""
			case i > 0:
				out = append(out, part[:i])
				part = part[i:]
			default:
				j := strings.IndexByte(part, ']')
				if j < 0 {
					return out
				}
				out = append(out, part[:j+1])
				part = part[j+1:]
			}
		}
	}
	return out
}

func step(n *yaml.Node, seg string) (*yaml.Node, int) {
	if strings.HasPrefix(seg, "[") {
		i, err := strconv.Atoi(strings.Trim(seg, "[]"))
		if err != nil || n.Kind != yaml.SequenceNode || i < 0 || i >= len(n.Content) {
			return nil, 0
		}
		return n.Content[i], 0
	}
	if n.Kind != yaml.MappingNode {
		return nil, 0
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == seg {
			return n.Content[i+1], n.Content[i].Line
		}
	}
	return nil, 0
}
