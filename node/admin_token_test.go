package node

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strings"
	"testing"
)

func TestTokenMatches(t *testing.T) {
	const tok = "s3cret-token"
	for _, tc := range []struct {
		got  string
		want bool
	}{
		{tok, true},
		{"s3cret-tokeN", false}, // same length
		{"s3cret", false},       // a prefix
		{tok + "x", false},      // longer
		{tok + tok, false},      // twice
		{"", false},
	} {
		if got := tokenMatches(tc.got, tok); got != tc.want {
			t.Errorf("tokenMatches(%q, %q) = %v, want %v", tc.got, tok, got, tc.want)
		}
	}
}

// TestTokenComparedThroughOneHelper: every comparison with the admin
// token goes through tokenMatches. Before it, authorize and hasToken
// called subtle.ConstantTimeCompare on the tokens themselves, which
// returns at once when their lengths differ and so tells a client that
// times it the token's length.
func TestTokenComparedThroughOneHelper(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			fn, ok := d.(*ast.FuncDecl)
			if !ok || fn.Name.Name == "tokenMatches" {
				continue
			}
			ast.Inspect(fn, func(n ast.Node) bool {
				if sel, ok := n.(*ast.SelectorExpr); ok && sel.Sel.Name == "ConstantTimeCompare" {
					t.Errorf("%s: %s calls ConstantTimeCompare; compare tokens with tokenMatches", fset.Position(sel.Pos()), fn.Name.Name)
				}
				return true
			})
		}
	}
}
