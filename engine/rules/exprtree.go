package rules

import (
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/vm"
)

// A compiled expression keeps its syntax tree (vm.Program.Node), though
// running it needs only the bytecode, constants and positions. The tree,
// with the type the checker gave every node and the nodes the fast paths
// patched in, was ~60 % of a compiled rule's memory (~4 KB of ~6.7 KB) and
// all of it pointers that every garbage collection marks: with 10,000
// rules, ~40 MB marked in every cycle (BENCHMARKS.md, twelfth round). So
// once the set is loaded and everything that reads the trees has read them
// (the checks at compile, readsCustomer), the trees are cut down to their
// root, which keeps its type.

// dropTrees cuts every program of s down to the root of its tree.
func dropTrees(s *Set) {
	for _, e := range s.Entities {
		dropTree(e.Key)
	}
	for _, r := range s.Rules {
		dropTree(r.If)
		dropTree(r.Deadline)
		dropTree(r.Notify.To)
		dropTree(r.Dedup.Key)
		for i := range r.Notify.Vars {
			dropTree(r.Notify.Vars[i].Expr)
		}
		for i := range r.Where {
			dropTree(r.Where[i].Value)
		}
	}
}

// dropTree replaces the children of every node of p's tree, from the
// leaves up, with empty nodes: the root stays (the program holds it), the
// rest is garbage.
func dropTree(p *vm.Program) {
	if p == nil {
		return
	}
	root := p.Node()
	if root == nil {
		return
	}
	ast.Walk(&root, dropper{})
}

type dropper struct{}

// Visit runs after the node's children were visited: node points at the
// field of its parent (or at dropTree's copy of the root).
func (dropper) Visit(node *ast.Node) { *node = &ast.NilNode{} }

// readsCustomer says whether p names `customer`, `contacted_within`
// (which reads it) or the whole environment.
func readsCustomer(p *vm.Program) bool {
	if p == nil {
		return false
	}
	v := &custVisitor{}
	node := p.Node()
	if node == nil {
		return true // no tree to inspect: keep the safe order
	}
	ast.Walk(&node, v)
	return v.found
}

type custVisitor struct{ found bool }

func (v *custVisitor) Visit(n *ast.Node) {
	if id, ok := (*n).(*ast.IdentifierNode); ok {
		switch id.Value {
		case EnvCustomer, "contacted_within", "$env":
			v.found = true
		}
	}
}
