package rules

import (
	"reflect"
	"slices"
	"sync"
	"time"

	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/builtin"
	"github.com/expr-lang/expr/vm/runtime"
)

// Fast paths for the three operations rule conditions spend their time in
// (CPU profiles of `proactived bench`): a field of an entity or event
// (`order.total`), a string in a list of constants (`event.reason in
// ["a", "b"]`) and `date(s)` of an RFC 3339 string. expr does the first
// two by reflection, and its date() tries three other layouts (each
// allocating an error) before RFC 3339. The patch below rewrites those
// nodes into calls of the functions here, which take the common case
// directly and hand anything else to the very code expr would have run,
// so results and errors stay the same (exprfast_test.go compares them).

// dateBuiltin is expr's own date().
var dateBuiltin = builtin.Builtins[builtin.Index["date"]].Func

// getField is m.key: a map[string]any directly, anything else as expr's
// OpFetch does (a missing key of a map is nil there too).
func getField(m, key any) any {
	if m, ok := m.(map[string]any); ok {
		return m[key.(string)]
	}
	return runtime.Fetch(m, key)
}

// stringSet is the constant list of an `in`: the strings, and the set
// expr's optimizer would have built from them. A short list builds its set
// only when a needle that is not a string needs it (expr's own `in`): the
// maps of ten thousand rules' lists were megabytes of pointers that every
// garbage collection marks.
type stringSet struct {
	list []string
	once sync.Once
	set  map[string]struct{}
}

// newStringSet is the set of list, whose strings set holds: kept for a
// long list, which is looked up in it.
func newStringSet(list []string, set map[string]struct{}) *stringSet {
	ss := &stringSet{list: list}
	if len(list) > smallSet {
		ss.once.Do(func() { ss.set = set })
	}
	return ss
}

func (ss *stringSet) build() {
	ss.set = make(map[string]struct{}, len(ss.list))
	for _, s := range ss.list {
		ss.set[s] = struct{}{}
	}
}

// smallSet is the longest list compared one by one: a few string
// comparisons cost less than hashing the needle.
const smallSet = 8

// inStrings is `x in [constant strings]`; a needle that is not a string
// goes to runtime.In with the set, as before.
func inStrings(x, set any) bool {
	ss := set.(*stringSet)
	s, ok := x.(string)
	if !ok {
		ss.once.Do(ss.build)
		return runtime.In(x, ss.set)
	}
	if len(ss.list) <= smallSet {
		for _, e := range ss.list {
			if e == s {
				return true
			}
		}
		return false
	}
	_, in := ss.set[s]
	return in
}

// dateOf is date(s) with one argument. A string with a 'T' after its
// date cannot match any of the layouts expr tries before RFC 3339 (each
// needs the string to end or have a space there), so trying RFC 3339
// first gives what expr gives. An error panics, as expr does with the
// error its own date() returns.
func dateOf(x any) any {
	if s, ok := x.(string); ok && len(s) > 10 && s[10] == 'T' {
		if t, err := time.Parse(time.RFC3339, s); err == nil {
			return t
		}
	}
	t, err := dateBuiltin(x)
	if err != nil {
		panic(err)
	}
	return t
}

// fastPaths is the patch that routes nodes to the functions above.
type fastPaths struct {
	// dates are the date() calls patched, with what they were: a method
	// call on one (date(x).Format(…)) gets the original back, whose type
	// (time.Time) lets expr check and call the method directly.
	dates map[ast.Node]ast.Node
}

func newFastPaths() *fastPaths {
	return &fastPaths{dates: map[ast.Node]ast.Node{}}
}

func (f *fastPaths) Visit(node *ast.Node) {
	switch n := (*node).(type) {
	case *ast.MemberNode:
		if orig, ok := f.dates[n.Node]; ok && n.Method {
			n.Node = orig
			return
		}
		prop, ok := n.Property.(*ast.StringNode)
		if !ok || n.Optional || n.Method || isEnv(n.Node) || !mapOrUnknown(n.Node) {
			return // $env.name stays checked against the environment's names
		}
		f.patch(node, getField, n.Node, prop)
	case *ast.BinaryNode:
		if n.Operator != "in" || !stringOrUnknown(n.Left) {
			return // 1 in ["a"] stays a compile error
		}
		list, ok := n.Right.(*ast.ArrayNode)
		if !ok || len(list.Nodes) == 0 {
			return
		}
		strs := make([]string, 0, len(list.Nodes))
		set := make(map[string]struct{}, len(list.Nodes))
		for _, e := range list.Nodes {
			s, ok := e.(*ast.StringNode)
			if !ok {
				return
			}
			if _, dup := set[s.Value]; !dup {
				strs = append(strs, s.Value)
				set[s.Value] = struct{}{}
			}
		}
		ss := newStringSet(slices.Clip(strs), set)
		c := &ast.ConstantNode{Value: ss}
		c.SetType(reflect.TypeOf(ss))
		c.SetLocation(list.Location())
		f.patch(node, inStrings, n.Left, c)
	case *ast.BuiltinNode:
		if n.Name != "date" || len(n.Arguments) != 1 || !stringOrUnknown(n.Arguments[0]) {
			return // date(1) stays a compile error, as expr reports it
		}
		// A BuiltinNode is expr's own date: a name of the environment
		// would have been parsed as a call of its value.
		orig := *node
		f.patch(node, dateOf, n.Arguments[0])
		f.dates[*node] = orig
	}
}

// patch replaces the node with a call of fn, keeping its place in the
// source for error messages. The function is the callee itself, a
// constant of the program: expr calls a function value of these
// signatures directly (OpCallTyped), where a call by name (expr.Function)
// allocates its argument list at every run, and no environment has to
// provide it.
func (*fastPaths) patch(node *ast.Node, fn any, args ...ast.Node) {
	loc := (*node).Location()
	callee := &ast.ConstantNode{Value: fn}
	callee.SetType(reflect.TypeOf(fn))
	callee.SetLocation(loc)
	call := &ast.CallNode{Callee: callee, Arguments: args}
	ast.Patch(node, call)
}

// mapOrUnknown reports whether a checked node is a map[string]any or of
// a type only known at run time.
func mapOrUnknown(n ast.Node) bool {
	t := n.Type()
	if t == nil || t.Kind() == reflect.Interface {
		return true
	}
	return t.Kind() == reflect.Map && t.Key().Kind() == reflect.String && t.Elem().Kind() == reflect.Interface
}

// stringOrUnknown reports whether a checked node is a string or of a type
// only known at run time.
func stringOrUnknown(n ast.Node) bool {
	t := n.Type()
	return t == nil || t.Kind() == reflect.Interface || t.Kind() == reflect.String
}

func isEnv(n ast.Node) bool {
	id, ok := n.(*ast.IdentifierNode)
	return ok && id.Value == "$env"
}
