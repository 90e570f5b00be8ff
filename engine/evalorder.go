package engine

import (
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/vm"

	"github.com/proactived/proactived/engine/rules"
)

// ifNeedsCustomer says whether an `if` program reads the customer: it
// names `customer`, `contacted_within` (which reads it) or the whole
// environment. When it does not, evalRule can run `if` before resolving
// notify.to, and most evaluations — the rules that do not fire — skip the
// notify.to program and the customer look-up. The answer is cached per
// program; SetRules clears the cache.
func (e *Engine) ifNeedsCustomer(p *vm.Program) bool {
	if v, ok := e.needsCust[p]; ok {
		return v
	}
	v := &custVisitor{}
	node := p.Node()
	if node == nil {
		v.found = true // no tree to inspect: keep the safe order
	} else {
		ast.Walk(&node, v)
	}
	if e.needsCust == nil {
		e.needsCust = map[*vm.Program]bool{}
	}
	e.needsCust[p] = v.found
	return v.found
}

type custVisitor struct{ found bool }

func (v *custVisitor) Visit(n *ast.Node) {
	if id, ok := (*n).(*ast.IdentifierNode); ok {
		switch id.Value {
		case rules.EnvCustomer, "contacted_within", "$env":
			v.found = true
		}
	}
}
