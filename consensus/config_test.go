package consensus

import (
	"go/ast"
	"go/parser"
	"go/token"
	"strings"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	ok := DefaultConfig()
	ok.ID, ok.DataDir = "n1", t.TempDir()
	if err := ok.Validate(); err != nil {
		t.Fatalf("DefaultConfig: %v", err)
	}
	local := DefaultLocalConfig()
	local.ID, local.DataDir = "n1", "d"
	if err := local.Validate(); err != nil {
		t.Fatalf("DefaultLocalConfig: %v", err)
	}
	if err := (Config{ID: "n1", DataDir: "d"}).Validate(); err != nil {
		t.Fatalf("zero config with ID and DataDir: %v", err)
	}
	tests := []struct {
		name  string
		mod   func(*Config)
		field string
	}{
		{"no ID", func(c *Config) { c.ID = "" }, "ID"},
		{"no DataDir", func(c *Config) { c.DataDir = "" }, "DataDir"},
		{"negative expect", func(c *Config) { c.BootstrapExpect = -1 }, "BootstrapExpect"},
		{"lease > heartbeat", func(c *Config) { c.Timing.LeaderLeaseTimeout = 2 * c.Timing.HeartbeatTimeout }, "LeaderLeaseTimeout"},
		{"tiny reconcile", func(c *Config) { c.Timing.ReconcileInterval = time.Millisecond }, "ReconcileInterval"},
		{"negative min quorum", func(c *Config) { c.MinQuorum = -1 }, "MinQuorum"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := ok
			tc.mod(&c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("Validate = %v, want an error naming %s", err, tc.field)
			}
		})
	}
}

// TestConfigFieldsDocumentDefaults enforces STYLE habit 4: every field
// comment of Config and Timing states its default.
func TestConfigFieldsDocumentDefaults(t *testing.T) {
	t.Parallel()
	f, err := parser.ParseFile(token.NewFileSet(), "config.go", nil, parser.ParseComments)
	if err != nil {
		t.Fatal(err)
	}
	ast.Inspect(f, func(n ast.Node) bool {
		ts, ok := n.(*ast.TypeSpec)
		if !ok || (ts.Name.Name != "Config" && ts.Name.Name != "Timing") {
			return true
		}
		for _, fld := range ts.Type.(*ast.StructType).Fields.List {
			if fld.Doc == nil || !strings.Contains(fld.Doc.Text(), "default") {
				t.Errorf("%s.%s: comment lacks its default", ts.Name.Name, fld.Names[0].Name)
			}
		}
		return false
	})
}
