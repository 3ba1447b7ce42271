package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"

	"go.yaml.in/yaml/v3"

	"github.com/pingora-go/pingora-go/internal/suggest"
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
		return nil, yamlError(file, data, err, nil)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return &root, nil
	}
	if err := documentShape(file, &root, out); err != nil {
		return nil, err
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(out); err != nil && !errors.Is(err, io.EOF) {
		return nil, typeErrorFields(&root, yamlError(file, data, err, out))
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

// documentShapes says in words what each kind of document is.
var documentShapes = map[reflect.Type]string{
	reflect.TypeFor[*Cluster](): "a mapping with upstreams and routes",
	reflect.TypeFor[*Node]():    "a mapping of node settings (name, listeners, cluster_config, ...)",
}

// documentShape refuses a document that is not a mapping (a list, a
// string, a number), which the YAML library reports as "cannot unmarshal
// !!seq into config.Cluster". A null document is the empty one.
func documentShape(file string, root *yaml.Node, out any) error {
	top := root
	if top.Kind == yaml.DocumentNode && len(top.Content) > 0 {
		top = top.Content[0]
	}
	if top.Kind == yaml.AliasNode && top.Alias != nil {
		top = top.Alias
	}
	if top.Kind == yaml.MappingNode || top.Kind == yaml.DocumentNode || top.ShortTag() == "!!null" {
		return nil
	}
	want, ok := documentShapes[reflect.TypeOf(out)]
	if !ok {
		want = "a mapping"
	}
	return &Errors{File: file, List: []FieldError{{Line: top.Line, Msg: "the document must be " + want + ", got " + gotValue(top)}}}
}

// parserProblems are the messages of the YAML parser (not its scanner or
// decoder). For them the library reports a line counted from 0 (it adds
// one for scanner errors only), so the line named is one too early: the
// line where the unclosed mapping or sequence began, or the offending
// line, is the next one.
var parserProblems = []string{"did not find expected", "found duplicate %YAML", "found incompatible YAML", "found undefined tag handle", "found duplicate %TAG"}

var (
	yamlLine     = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)
	unknownField = regexp.MustCompile(`^field (\S+) not found in type (\S+)$`)
)

// yamlError turns the YAML library's messages about data into FieldErrors
// with lines. into is what data was decoded into (nil: none), for the fields
// an unknown one may be a typo of.
func yamlError(file string, data []byte, err error, into any) error {
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
			if near := nearestField(into, sub[2], sub[1]); near != "" {
				fe.Msg += fmt.Sprintf(" (did you mean %q?)", near)
			}
		}
		out.List = append(out.List, fe)
	}
	return out
}

// typeMismatch is the YAML library's message for a value of the wrong
// type: the tag, the value cut to 10 bytes (with "..."; none for a list
// or mapping), the Go type.
var typeMismatch = regexp.MustCompile("^cannot unmarshal (!!\\w+)(?: `(.*)`)? into (.+)$")

// typeErrorFields names the field of each wrong-type error and says what
// it wants in words, with the whole value: the library gives a line alone
// ("line 4: cannot unmarshal !!str `10.213....` into []string"), and one
// line may hold several fields (a flow mapping).
func typeErrorFields(root *yaml.Node, err error) error {
	var ce *Errors
	if !errors.As(err, &ce) {
		return err
	}
	for i, fe := range ce.List {
		m := typeMismatch.FindStringSubmatch(fe.Msg)
		if m == nil || fe.Line == 0 || fe.Path != "" {
			continue
		}
		path, v := fieldAt(root, fe.Line, m[1], m[2])
		if v == nil {
			// not found (an alias, say): still no Go type or YAML tag
			ce.List[i].Msg = "want " + wantType(m[3]) + ", got " + tagWords(m[1], m[2])
			continue
		}
		ce.List[i].Path = path
		ce.List[i].Msg = "want " + wantType(m[3]) + ", got " + gotValue(v)
		if elem, ok := strings.CutPrefix(m[3], "[]"); ok && v.Kind == yaml.ScalarNode && !strings.Contains(elem, ".") {
			ce.List[i].Msg += fmt.Sprintf(" (a list of one: [%s])", v.Value)
		}
	}
	return ce
}

// fieldAt finds the field at line whose value has the tag and starts as
// shown, and returns its path ("listeners[0].h2c") and value node.
func fieldAt(root *yaml.Node, line int, tag, shown string) (string, *yaml.Node) {
	prefix, cut := strings.CutSuffix(shown, "...")
	match := func(v *yaml.Node) bool {
		if v.Line != line || v.ShortTag() != tag {
			return false
		}
		if v.Kind != yaml.ScalarNode {
			return shown == ""
		}
		return v.Value == shown || cut && strings.HasPrefix(v.Value, prefix)
	}
	var walk func(n *yaml.Node, path string) (string, *yaml.Node)
	walk = func(n *yaml.Node, path string) (string, *yaml.Node) {
		switch n.Kind {
		case yaml.DocumentNode:
			for _, c := range n.Content {
				if p, v := walk(c, path); v != nil {
					return p, v
				}
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				p := n.Content[i].Value
				if path != "" {
					p = path + "." + p
				}
				if v := n.Content[i+1]; match(v) {
					return p, v
				}
				if p, v := walk(n.Content[i+1], p); v != nil {
					return p, v
				}
			}
		case yaml.SequenceNode:
			for i, c := range n.Content {
				p := fmt.Sprintf("%s[%d]", path, i)
				if match(c) {
					return p, c
				}
				if p, v := walk(c, p); v != nil {
					return p, v
				}
			}
		}
		return "", nil
	}
	return walk(root, "")
}

// wantType says a Go type of the documents in words.
func wantType(goType string) string {
	switch {
	case strings.HasPrefix(goType, "[]") && strings.Contains(goType, "."):
		// a list of this package's mappings: "[]config.Route"
		_, name, _ := strings.Cut(goType, ".")
		return "a list of " + plural(name) + " (mappings)"
	case strings.HasPrefix(goType, "[]"):
		return "a list"
	case strings.HasPrefix(goType, "map["):
		return "a mapping"
	case goType == "time.Duration":
		return "a duration such as 500ms, 10s or 1m30s"
	case goType == "bool":
		return "true or false"
	case goType == "string":
		return "a string"
	case strings.HasPrefix(goType, "int"), strings.HasPrefix(goType, "uint"):
		return "a whole number"
	case strings.HasPrefix(goType, "float"):
		return "a number"
	case strings.Contains(goType, "."):
		return "a mapping"
	}
	return goType
}

// plural names the items of a list of Go type name in the document's
// words: "RateLimit" is "rate limits".
func plural(name string) string {
	var b strings.Builder
	for i, r := range name {
		if unicode.IsUpper(r) {
			if i > 0 {
				b.WriteByte(' ')
			}
			r = unicode.ToLower(r)
		}
		b.WriteRune(r)
	}
	return b.String() + "s"
}

// tagWords says a value the YAML library names by its tag and the start
// of its text (cut to 10 bytes, with "...") in words.
func tagWords(tag, shown string) string {
	switch tag {
	case "!!seq":
		return "a list"
	case "!!map":
		return "a mapping"
	case "!!str":
		return strconv.Quote(shown)
	}
	if shown != "" {
		return shown
	}
	return "a value of another type"
}

// gotValue says a value of a document in words.
func gotValue(v *yaml.Node) string {
	switch {
	case v.Kind == yaml.SequenceNode:
		return "a list"
	case v.Kind == yaml.MappingNode:
		return "a mapping"
	case v.ShortTag() == "!!str":
		return strconv.Quote(v.Value)
	}
	return v.Value
}

// wholeNumbers refuses a number with a fraction given for a whole-number
// field of out, which decode left truncated (see fractionalInts).
func wholeNumbers(file string, root *yaml.Node, out any) error {
	var frac []FieldError
	fractionalInts(root, reflect.TypeOf(out), "", &frac)
	if len(frac) > 0 {
		return &Errors{File: file, List: frac}
	}
	return nil
}

var (
	durationType    = reflect.TypeFor[time.Duration]()
	unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()
)

// fractionalInts reports each number with a fraction given for a whole
// number (weight: 1.5, bootstrap_expect: 2.5), walking n beside the Go
// type t it was decoded into: the YAML library truncates such a value
// without a word (weight: 1.5 ran as 1, retries: 0.5 as 0). A whole number
// written as a float (2.0, 1e3) is that number.
func fractionalInts(n *yaml.Node, t reflect.Type, path string, out *[]FieldError) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if n.Kind == yaml.DocumentNode {
		for _, c := range n.Content {
			fractionalInts(c, t, path, out)
		}
		return
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) {
		return
	}
	join := func(key string) string {
		if path == "" {
			return key
		}
		return path + "." + key
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			key := n.Content[i].Value
			for j := range t.NumField() {
				f := t.Field(j)
				name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
				if name == "" {
					name = strings.ToLower(f.Name)
				}
				if f.IsExported() && name == key {
					fractionalInts(n.Content[i+1], f.Type, join(key), out)
				}
			}
		}
	case reflect.Slice, reflect.Array:
		if n.Kind == yaml.SequenceNode {
			for i, c := range n.Content {
				fractionalInts(c, t.Elem(), fmt.Sprintf("%s[%d]", path, i), out)
			}
		}
	case reflect.Map:
		if n.Kind == yaml.MappingNode {
			for i := 0; i+1 < len(n.Content); i += 2 {
				fractionalInts(n.Content[i+1], t.Elem(), join(n.Content[i].Value), out)
			}
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if t == durationType || n.Kind != yaml.ScalarNode || n.ShortTag() != "!!float" {
			return
		}
		if v, err := strconv.ParseFloat(strings.ReplaceAll(n.Value, "_", ""), 64); err != nil || v != math.Trunc(v) {
			*out = append(*out, FieldError{Path: path, Line: n.Line, Msg: "want a whole number, got " + n.Value})
		}
	}
}

// nearestField returns the field of the struct type named typeName (as
// reflect names it, "config.NodeFile"), found in out's type, whose YAML
// name is closest to typed: at most two edits away, one for names under six
// letters. "" when there is none. A node file's "bootstrap_expcet" was an
// unknown field and no more; flags and variables had their suggestion.
func nearestField(out any, typeName, typed string) string {
	if out == nil {
		return ""
	}
	t := findType(reflect.TypeOf(out), typeName, map[reflect.Type]bool{})
	if t == nil {
		return ""
	}
	best, bestD := "", 3
	for _, name := range yamlNames(t) {
		if d := suggest.Distance(typed, name); d < bestD && d*3 <= len(typed) {
			best, bestD = name, d
		}
	}
	return best
}

func findType(t reflect.Type, name string, seen map[reflect.Type]bool) reflect.Type {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Array || t.Kind() == reflect.Map {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct || seen[t] {
		return nil
	}
	seen[t] = true
	if t.String() == name {
		return t
	}
	for i := range t.NumField() {
		if found := findType(t.Field(i).Type, name, seen); found != nil {
			return found
		}
	}
	return nil
}

// yamlNames lists the keys yaml.v3 decodes into struct type t.
func yamlNames(t reflect.Type) []string {
	var out []string
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("yaml")
		name, opts, _ := strings.Cut(tag, ",")
		switch {
		case name == "-" || !f.IsExported():
		case strings.Contains(opts, "inline"):
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				out = append(out, yamlNames(ft)...)
			}
		case name == "":
			out = append(out, strings.ToLower(f.Name))
		default:
			out = append(out, name)
		}
	}
	return out
}
