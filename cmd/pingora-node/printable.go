package main

import (
	"bytes"
	"fmt"
	"reflect"
	"strings"
	"unicode/utf8"
)

// What a node reports is not all the node's own: member names, zones,
// versions and addresses come from whoever gossips (anyone who reaches a
// gossip port without gossip_key), error texts from peers and upstreams.
// Written to a terminal as they are, control characters in them would be
// obeyed: an escape sequence can retitle the window, clear the screen,
// hide or recolour rows, or forge a line of the table. So the commands
// that render a document pass it through printable first, which writes
// each such character as an escape (\x1b, \u009b) instead. --json output
// goes through safeJSON, which writes them as JSON escapes (\u001b): Go's
// encoder escapes the C0 controls but writes DEL, the C1 controls and the
// bidirectional overrides as they are.

// printable rewrites, in place, every settable string reachable from v (a
// pointer): struct fields, slice and array elements, map keys and values.
func printable(v any) { cleanValue(reflect.ValueOf(v)) }

func cleanValue(v reflect.Value) {
	switch v.Kind() {
	case reflect.Pointer:
		if !v.IsNil() {
			cleanValue(v.Elem())
		}
	case reflect.Interface:
		if v.IsNil() || !v.CanSet() {
			return
		}
		e := reflect.New(v.Elem().Type()).Elem()
		e.Set(v.Elem())
		cleanValue(e)
		v.Set(e)
	case reflect.Struct:
		for i := range v.NumField() {
			cleanValue(v.Field(i))
		}
	case reflect.Slice, reflect.Array:
		for i := range v.Len() {
			cleanValue(v.Index(i))
		}
	case reflect.Map:
		if v.IsNil() || !v.CanSet() {
			return
		}
		m := reflect.MakeMapWithSize(v.Type(), v.Len())
		for it := v.MapRange(); it.Next(); {
			k := reflect.New(v.Type().Key()).Elem()
			k.Set(it.Key())
			cleanValue(k)
			e := reflect.New(v.Type().Elem()).Elem()
			e.Set(it.Value())
			cleanValue(e)
			m.SetMapIndex(k, e)
		}
		v.Set(m)
	case reflect.String:
		if v.CanSet() {
			v.SetString(escapeControls(v.String()))
		}
	}
}

// unsafeRune reports whether a terminal could act on r: the C0 controls
// (new line and tab too: in a table cell they forge rows and columns),
// DEL, the C1 controls, and the bidirectional overrides that reorder what
// follows them.
func unsafeRune(r rune) bool {
	return r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == utf8.RuneError ||
		r == '\u200e' || r == '\u200f' || (r >= '\u202a' && r <= '\u202e') || (r >= '\u2066' && r <= '\u2069')
}

// escapeControls returns s with each unsafe rune written as an escape:
// \xHH below 0x80 and for a byte that is not UTF-8, \uHHHH above.
func escapeControls(s string) string {
	if strings.IndexFunc(s, unsafeRune) < 0 {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size <= 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case !unsafeRune(r):
			b.WriteString(s[i : i+size])
		case r < 0x80:
			fmt.Fprintf(&b, `\x%02x`, r)
		default:
			fmt.Fprintf(&b, `\u%04x`, r)
		}
		i += size
	}
	return b.String()
}

// safeJSON returns the JSON document raw with each unsafe rune written as
// a JSON escape (\u001b, \u009b, \u202e), and each byte that is not
// UTF-8 as \ufffd, which is what a decoder reads it as. JSON's white
// space (tab, new line, return) is left: in a valid document it lies
// between tokens only, as a string cannot hold it raw, and every other
// unsafe rune lies in a string. So a valid document stays valid and
// decodes to the same values.
func safeJSON(raw []byte) []byte {
	if bytes.IndexFunc(raw, jsonUnsafe) < 0 {
		return raw
	}
	b := make([]byte, 0, len(raw)+32)
	for i := 0; i < len(raw); {
		r, size := utf8.DecodeRune(raw[i:])
		if jsonUnsafe(r) {
			b = fmt.Appendf(b, `\u%04x`, r)
		} else {
			b = append(b, raw[i:i+size]...)
		}
		i += size
	}
	return b
}

func jsonUnsafe(r rune) bool { return r != '\t' && r != '\n' && r != '\r' && unsafeRune(r) }
