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
		return nil, yamlError(file, err)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return &root, nil
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(out); err != nil && !errors.Is(err, io.EOF) {
		return nil, yamlError(file, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, &Errors{File: file, List: []FieldError{{Msg: "more than one document"}}}
	}
	return &root, nil
}

var (
	yamlLine     = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)
	unknownField = regexp.MustCompile(`^field (\S+) not found in type \S+$`)
)

// yamlError turns the YAML library's messages into FieldErrors with lines.
func yamlError(file string, err error) error {
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
		}
		if sub := unknownField.FindStringSubmatch(fe.Msg); sub != nil {
			fe.Msg = fmt.Sprintf("unknown field %q", sub[1])
		}
		out.List = append(out.List, fe)
	}
	return out
}
