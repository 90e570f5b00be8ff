package rules

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/checker"
	"github.com/expr-lang/expr/conf"
	"github.com/expr-lang/expr/vm"
	"github.com/expr-lang/expr/vm/runtime"
)

// Limits on expressions. A rule file is written by ops, but a typo such as
// map(1..100000000, #) or repeat(repeat("x", 1e6), 1e6) must be an error,
// not a daemon that runs out of memory.
//
//   - MaxExprSource and MaxExprNodes bound what is compiled.
//   - expr's VM memory budget (conf.DefaultMemoryBudget: 1e6 units, where a
//     range, list or map costs one unit per element) bounds ranges, lists
//     and loops over them; the engine's zero vm.VM uses it.
//   - The budget does not see how long strings are, so the builtins that
//     make strings longer than their inputs (repeat, join, replace, toJSON,
//     string) are replaced by versions that check the size first, and the
//     result of every + that may join strings is checked: no expression
//     builds a string over MaxExprString.
const (
	MaxExprSource = 4 << 10
	MaxExprString = 64 << 10
)

// MaxExprNodes caps the size of one expression's syntax tree.
const MaxExprNodes = 2000

// ErrExprStringTooLarge is returned (wrapped) by an expression that would
// build a string over MaxExprString.
var ErrExprStringTooLarge = fmt.Errorf("string longer than %d bytes", MaxExprString)

// Names of the size checks the loader wraps around +. The leading "__"
// keeps them out of the way of entity names (reservedName).
const (
	guardString = "__str_limit"
	guardAny    = "__any_limit"
)

// ExprOptions are the options every rule expression is compiled with
// besides expr.AsBool: the environment, the node cap, the size guards and
// the fast paths (exprfast.go). Tests and benchmarks use them to compile
// exactly as the loader does.
func ExprOptions(env map[string]any) []expr.Option {
	return append(baseOptions(env), expr.Patch(newFastPaths()), expr.Patch(concatGuard{}))
}

// baseOptions are the environment, the node cap and the guarded builtins,
// without any patch: what an expression is checked with (compileExpr).
func baseOptions(env map[string]any) []expr.Option {
	return []expr.Option{
		expr.Env(env),
		expr.MaxNodes(MaxExprNodes),
		expr.Function("repeat", guardedRepeat, new(func(string, int) string)),
		expr.Function("join", guardedJoin, new(func([]string, string) string), new(func([]any, string) string), new(func([]any) string), new(func([]string) string)),
		expr.Function("replace", guardedReplace, new(func(string, string, string) string), new(func(string, string, string, int) string)),
		expr.Function("toJSON", guardedToJSON, new(func(any) string)),
		expr.Function("string", guardedString, new(func(any) string)),
		expr.Function(guardString, func(a ...any) (any, error) { return limitString(a[0].(string)) }, new(func(string) string)),
		expr.Function(guardAny, func(a ...any) (any, error) {
			if s, ok := a[0].(string); ok {
				return limitString(s)
			}
			return a[0], nil
		}, new(func(any) any)),
	}
}

func limitString(s string) (string, error) {
	if len(s) > MaxExprString {
		return "", ErrExprStringTooLarge
	}
	return s, nil
}

// concatGuard wraps each a + b whose operands may be strings in a size
// check. One + at most doubles the longest input, so checking its result
// is enough; + of numbers, times and durations is left alone.
type concatGuard struct{}

func (concatGuard) Visit(node *ast.Node) {
	b, ok := (*node).(*ast.BinaryNode)
	if !ok || b.Operator != "+" {
		return
	}
	l, r := typeKind(b.Left), typeKind(b.Right)
	switch {
	case l == reflect.String && r == reflect.String:
		ast.Patch(node, &ast.CallNode{Callee: &ast.IdentifierNode{Value: guardString}, Arguments: []ast.Node{b}})
	case (l == reflect.String || l == reflect.Interface) && (r == reflect.String || r == reflect.Interface):
		ast.Patch(node, &ast.CallNode{Callee: &ast.IdentifierNode{Value: guardAny}, Arguments: []ast.Node{b}})
	}
}

// typeKind is the kind of a checked node's type; Interface when unknown.
func typeKind(n ast.Node) reflect.Kind {
	t := n.Type()
	if t == nil {
		return reflect.Interface
	}
	return t.Kind()
}

func guardedRepeat(args ...any) (any, error) {
	s, n := args[0].(string), runtime.ToInt(args[1])
	switch {
	case n < 0:
		return nil, fmt.Errorf("invalid argument for repeat (expected positive integer, got %d)", n)
	case len(s) > 0 && n > MaxExprString/len(s):
		return nil, fmt.Errorf("repeat: %w", ErrExprStringTooLarge)
	}
	return strings.Repeat(s, n), nil
}

func guardedJoin(args ...any) (any, error) {
	glue := ""
	if len(args) == 2 {
		glue = args[1].(string)
	}
	var parts []string
	switch list := args[0].(type) {
	case []string:
		parts = list
	case []any:
		parts = make([]string, len(list))
		for i, e := range list {
			s, ok := e.(string)
			if !ok {
				return nil, fmt.Errorf("join: element %d is %T, not a string", i, e)
			}
			parts[i] = s
		}
	default:
		return nil, fmt.Errorf("invalid argument for join (type %T)", args[0])
	}
	size := 0
	for _, p := range parts {
		size += len(p) + len(glue)
		if size > MaxExprString+len(glue) {
			return nil, fmt.Errorf("join: %w", ErrExprStringTooLarge)
		}
	}
	return strings.Join(parts, glue), nil
}

func guardedReplace(args ...any) (any, error) {
	s, old, repl := args[0].(string), args[1].(string), args[2].(string)
	n := -1
	if len(args) == 4 {
		n = runtime.ToInt(args[3])
	}
	if grow := len(repl) - len(old); grow > 0 {
		// Replacing "" inserts at every rune boundary.
		m := strings.Count(s, old)
		if n >= 0 && n < m {
			m = n
		}
		if m > 0 && (grow > MaxExprString || len(s)+m*grow > MaxExprString) {
			return nil, fmt.Errorf("replace: %w", ErrExprStringTooLarge)
		}
	}
	return strings.Replace(s, old, repl, n), nil
}

func guardedToJSON(args ...any) (any, error) {
	if !sizeWithin(args[0], MaxExprString, true) {
		return nil, fmt.Errorf("toJSON: %w", ErrExprStringTooLarge)
	}
	b, err := json.MarshalIndent(args[0], "", "  ")
	if err != nil {
		return nil, err
	}
	return limitString(string(b))
}

func guardedString(args ...any) (any, error) {
	if !sizeWithin(args[0], MaxExprString, false) {
		return nil, fmt.Errorf("string: %w", ErrExprStringTooLarge)
	}
	return fmt.Sprintf("%v", args[0]), nil
}

// compileExpr compiles one rule expression as the loader does: bounded in
// size, guarded, and giving a value rather than a function.
func compileExpr(src string, env map[string]any, asBool bool) (*vm.Program, error) {
	if len(src) > MaxExprSource {
		return nil, fmt.Errorf("expression is %d bytes, the limit is %d", len(src), MaxExprSource)
	}
	// Checked without patches first: expr keeps the type its check pass
	// before a patch gave a node and skips that node's arguments in the
	// final check, so with a patch an unknown name inside a call compiled
	// (`count_sent(evnt, "x") > 1`, `upper(evnt) + "x"`). This check
	// reports it.
	check := baseOptions(env)
	opts := ExprOptions(env)
	if asBool {
		check = append(check, expr.AsBool())
		opts = append(opts, expr.AsBool())
	}
	if err := checkOnly(src, check); err != nil {
		return nil, err
	}
	p, err := expr.Compile(src, opts...)
	if err != nil {
		return nil, err
	}
	if t := p.Node().Type(); t != nil && t.Kind() == reflect.Func {
		return nil, errFuncValue
	}
	return p, nil
}

// checkOnly parses and type-checks src with opts as expr.Compile does,
// without optimizing and compiling it.
func checkOnly(src string, opts []expr.Option) error {
	config := conf.CreateNew()
	for _, op := range opts {
		op(config)
	}
	config.Check()
	_, err := checker.ParseCheck(src, config)
	return err
}

// errFuncValue is a compiled expression that gives a function instead of
// calling it (`now` for `now()`).
var errFuncValue = errors.New("expression gives a function: call it, e.g. now()")

// CheckValue reports a value an expression gave that cannot travel in a
// notification document: one whose JSON would be over MaxExprString (a
// list of a thousand references to one long string is small in memory and
// huge as text) or that JSON cannot encode (a function). The engine checks
// `vars` with it before they reach templates and the outbox.
func CheckValue(v any) error {
	tooLarge := fmt.Errorf("value larger than %d bytes as JSON", MaxExprString)
	// The estimate is an upper bound (every byte escaped); it keeps
	// Marshal from building a gigabyte, and Marshal gives the real size.
	if !sizeWithin(v, 6*MaxExprString, true) {
		return tooLarge
	}
	b, err := json.Marshal(v)
	switch {
	case err != nil:
		return fmt.Errorf("value cannot be encoded as JSON: %w", err)
	case len(b) > MaxExprString:
		return tooLarge
	}
	return nil
}
