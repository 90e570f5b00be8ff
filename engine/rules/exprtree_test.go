package rules

import (
	"testing"

	"github.com/expr-lang/expr/ast"
)

// TestLoadedProgramsDropTheirTrees: a loaded set's programs keep only the
// root of their syntax tree (with its type), and still run as before.
func TestLoadedProgramsDropTheirTrees(t *testing.T) {
	s, err := loadString(t, ruleWithIf(`event.status in ["late", "lost"] && event.total >= 5000 && date(event.eta) > now()`))
	if err != nil {
		t.Fatal(err)
	}
	p := s.ByName["r"].If
	root, ok := p.Node().(*ast.BinaryNode)
	if !ok {
		t.Fatalf("root %T, want the && node", p.Node())
	}
	if _, ok := root.Left.(*ast.NilNode); !ok {
		t.Errorf("the tree below the root is still there: left %T", root.Left)
	}
	if _, ok := root.Right.(*ast.NilNode); !ok {
		t.Errorf("the tree below the root is still there: right %T", root.Right)
	}
	env := NewEnv([]string{"order"}, Funcs{})
	for data, want := range map[string]bool{"late": true, "ok": false} {
		env[EnvEvent] = map[string]any{"status": data, "total": 9000, "eta": "2999-01-01T00:00:00Z"}
		if got := run(t, p, env); got != want {
			t.Errorf("status %s: %v, want %v", data, got, want)
		}
	}
	if s.Entities["order"].Key.Node() == nil {
		t.Error("an entity key program lost its root")
	}
}

// TestIfReadsCustomer: the engine resolves the customer before `if` only
// when `if` reads it; the answer is taken before the tree goes.
func TestIfReadsCustomer(t *testing.T) {
	for cond, want := range map[string]bool{
		`event.total > 10`:        false,
		`customer.tier == "gold"`: true,
		`event.total > 10 && contacted_within(duration("1h"))`: true,
		`$env.event.total > 10`:                                true,
		`event.customer == "c-1"`:                              false,
	} {
		s, err := loadString(t, ruleWithIf(cond))
		if err != nil {
			t.Fatalf("%s: %v", cond, err)
		}
		if got := s.ByName["r"].IfReadsCustomer; got != want {
			t.Errorf("%s: reads customer %v, want %v", cond, got, want)
		}
	}
}
