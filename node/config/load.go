package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// maxDocumentBytes caps a config document: far above any real config, far
// below what could exhaust memory.
const maxDocumentBytes = 4 << 20

// decode strictly decodes one YAML or JSON document into out and returns its
// node tree for line lookups. file names the document in errors.
func decode(file string, data []byte, out any) (*yaml.Node, error) {
	if len(data) > maxDocumentBytes {
		return nil, &Errors{File: file, List: []FieldError{{Msg: fmt.Sprintf("document is %d bytes, over the %d byte limit", len(data), maxDocumentBytes)}}}
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, yamlError(file, data, err)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return &root, nil
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(out); err != nil && !errors.Is(err, io.EOF) {
		return nil, yamlError(file, data, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		line := extra.Line
		if len(extra.Content) > 0 {
			line = extra.Content[0].Line
		}
		return nil, &Errors{File: file, List: []FieldError{{Line: line, Msg: "more than one document (a second one starts here)"}}}
	}
	return &root, nil
}

// parserProblems are the messages of the YAML parser (not its scanner or
// decoder). For them the library reports a line counted from 0 (it adds
// one for scanner errors only), so the line named is one too early: the
// line where the unclosed mapping or sequence began, or the offending
// line, is the next one.
var parserProblems = []string{"did not find expected", "found duplicate %YAML", "found incompatible YAML", "found undefined tag handle", "found duplicate %TAG"}

var (
	yamlLine     = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)
	unknownField = regexp.MustCompile(`^field (\S+) not found in type \S+$`)
)

// yamlError turns the YAML library's messages about data into FieldErrors
// with lines.
func yamlError(file string, data []byte, err error) error {
	lines := bytes.Count(data, []byte("\n"))
	if !bytes.HasSuffix(data, []byte("\n")) {
		lines++
	}
	var msgs []string
	var te *yaml.TypeError
	if errors.As(err, &te) {
		msgs = te.Errors
	} else {
		msgs = []string{err.Error()}
	}
	out := &Errors{File: file}
	for _, m := range msgs {
		fe := FieldError{Msg: strings.TrimPrefix(m, "yaml: ")}
		if sub := yamlLine.FindStringSubmatch(m); sub != nil {
			fe.Line, _ = strconv.Atoi(sub[1])
			fe.Msg = sub[2]
			for _, p := range parserProblems {
				if strings.HasPrefix(fe.Msg, p) {
					fe.Line++
				}
			}
			fe.Line = min(fe.Line, lines) // the end of the stream is past the last line
		}
		if sub := unknownField.FindStringSubmatch(fe.Msg); sub != nil {
			fe.Msg = fmt.Sprintf("unknown field %q", sub[1])
		}
		out.List = append(out.List, fe)
	}
	return out
}
