package rules

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/vm"
)

// fastPathCorpus holds expressions the fast paths rewrite (fields, string
// lists, date) and their edge cases: missing keys, nil and non-map bases,
// non-string needles and date arguments, methods on a date, $env.
var fastPathCorpus = []string{
	`order.total`, `order.missing`, `order.total >= 1000`, `customer.tier`, `customer.tier in ["gold", "platinum"]`,
	`order.nested.a`, `order.nested.b[0].a`, `order["order_id"]`, `event.list[5].x`, `event.list[0].x`,
	`event.n.x`, `order.skus.x`, `msg.time.x`, `msg.subject`, `vars.new_eta`, `event.eta`,
	`event.reason in ["carrier_delay", "weather"]`, `event.order_id in ["o-1", "o-2"]`, `event.order_id not in ["o-1"]`,
	`event.n in ["1"]`, `event.list in ["x"]`, `nil in ["", "x"]`, `event.missing in ["", "x"]`, `"" in [""]`,
	`event.order_id in []`, `event.order_id in ["o-1", 2]`, `1 in ["a"]`, `event.order_id in ["o-1", "o-1"]`,
	`event.order_id in ["a", "b", "c", "d", "e", "f", "g", "h", "i", "o-1"]`, `event.n in ["a", "b", "c", "d", "e", "f", "g", "h", "i"]`,
	`event.missing in ["a", "b", "c", "d", "e", "f", "g", "h", ""]`, `event.reason in ["a", "b", "c", "d", "e", "f", "g", "h", "i"]`,
	`date(event.eta)`, `date(event.eta) > date(order.promised_at) + duration("2h")`, `date(event.eta).Format("2006-01-02")`,
	`date("2026-11-23")`, `date("2026-11-23 10:00:00")`, `date("10:00:00")`, `date("2026-11-23T12:00:00.123456789+03:00")`,
	`date("2026-11-23Tgarbage")`, `date("Mon, 02 Jan 2006 15:04:05 MST")`, `date(event.n)`, `date(order.missing)`,
	`date(event.eta, "2006-01-02T15:04:05Z07:00")`, `date(1)`, `date(event.eta).Year()`,
	`$env.order.total`, `$env.os.Getenv("HOME")`, `$env["order"].total`, `order?.total`, `customer?.tier`,
	`let o = order; o.total + 1`, `map(order.skus, # + "x")`, `filter(event.list, # == "x")`,
	`order.order_id + "/" + event.eta`, `count_sent("r", order.order_id) >= 2`,
}

// fastPathData are the environments the corpus runs over: the fuzz data,
// and one with nil entities and an event of other types.
func fastPathData() []map[string]any {
	d := fuzzData("big", 7, 1)
	d["order"].(map[string]any)["promised_at"] = "2026-11-22T18:00:00Z"
	d[EnvCustomer].(map[string]any)["tier"] = "gold"
	d[EnvEvent].(map[string]any)["reason"] = "weather"
	other := map[string]any{
		EnvEvent:    map[string]any{"eta": 17, "reason": []any{"weather"}, "order_id": nil, "list": "abc"},
		EnvMsg:      map[string]any{"subject": "", "id": "", "time": time.Time{}},
		"order":     map[string]any(nil),
		EnvCustomer: map[string]any(nil),
		EnvVars:     map[string]any(nil),
	}
	return []map[string]any{d, other}
}

// TestFastPathsGiveExprsResults compiles every corpus expression with and
// without the fast paths and runs both over each environment: the same
// compile errors, the same results, the same run-time errors.
func TestFastPathsGiveExprsResults(t *testing.T) {
	for _, src := range fastPathCorpus {
		for di, data := range fastPathData() {
			env := NewEnv([]string{"order"}, Funcs{
				Now:       func() time.Time { return time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC) },
				CountSent: func(string, string) int { return 2 },
			})
			env[EnvVars] = map[string]any(nil)
			plain, plainErr := compileWith(src, env, exprOptions)
			fast, fastErr := compileWith(src, env, ExprOptions)
			if fmt.Sprint(plainErr) != fmt.Sprint(fastErr) {
				t.Errorf("%s: compile error %v with the fast paths, %v without", src, fastErr, plainErr)
				continue
			}
			if plainErr != nil {
				continue
			}
			for k, v := range data {
				env[k] = v
			}
			var m vm.VM
			want, wantErr := m.Run(plain, env)
			got, gotErr := m.Run(fast, env)
			if fmt.Sprint(wantErr) != fmt.Sprint(gotErr) {
				t.Errorf("%s (data %d): error %v with the fast paths, %v without", src, di, gotErr, wantErr)
				continue
			}
			if !reflect.DeepEqual(want, got) {
				t.Errorf("%s (data %d): %#v with the fast paths, %#v without", src, di, got, want)
			}
		}
	}
}

// exprOptions are ExprOptions without the fast paths, which give the same
// results: what the tests compare them with.
func exprOptions(env map[string]any) []expr.Option {
	return append(baseOptions(env), expr.Patch(concatGuard{}))
}

// compileWith compiles as compileExpr does (checked without patches
// first), with the options opts gives.
func compileWith(src string, env map[string]any, opts func(map[string]any) []expr.Option) (*vm.Program, error) {
	if _, err := expr.Compile(src, baseOptions(env)...); err != nil {
		return nil, err
	}
	return expr.Compile(src, opts(env)...)
}

// TestUnknownNamesInsideCallsAreErrors: a misspelt name is a compile
// error wherever it is, also inside a call the loader patches (expr kept
// the patched call's type and skipped its arguments in its last check).
func TestUnknownNamesInsideCallsAreErrors(t *testing.T) {
	env := NewEnv([]string{"order"}, Funcs{})
	for _, src := range []string{`count_sent(evnt, "x") > 1`, `upper(evnt) + "x"`, `date(evnt.time)`, `date(evnt)`, `evnt.x in ["a"]`, `ordr.total > 1`} {
		if _, err := compileExpr(src, env, false); err == nil || !strings.Contains(err.Error(), "unknown name") {
			t.Errorf("%s: %v, want unknown name", src, err)
		}
	}
}

// TestFastPathsAreUsed: the rewritten forms are what the loader compiles
// (a field read, a string list and date() become direct calls of the fast
// functions), so the comparison above compares something; and what must
// stay as it was does.
func TestFastPathsAreUsed(t *testing.T) {
	env := NewEnv([]string{"order"}, Funcs{})
	disasm := func(src string, opts func(map[string]any) []expr.Option) string {
		t.Helper()
		p, err := compileWith(src, env, opts)
		if err != nil {
			t.Fatal(src, err)
		}
		return p.Disassemble()
	}
	const (
		get  = "func(interface {}, interface {}) interface {}"
		in   = "func(interface {}, interface {}) bool"
		date = "func(interface {}) interface {}"
	)
	for _, c := range []struct {
		src       string
		want, not []string
	}{
		{`order.total >= 5000`, []string{get}, []string{"OpFetch"}},
		{`event.reason in ["carrier_delay", "weather"]`, []string{get, in}, []string{"OpIn", "OpFetch"}},
		{`date(event.eta) > now()`, []string{get, date}, []string{"OpCall1"}},
		{`customer.tier in ["gold"] && order.total > 10`, []string{get, in}, []string{"OpFetch"}},
		// A method on date() keeps expr's date, typed time.Time.
		{`date(order.promised_at).Format("2006-01-02")`, []string{get, "OpCall1", "OpMethod"}, []string{date}},
		{`date(event.eta, "2006-01-02")`, []string{"OpCall2"}, []string{date}},
	} {
		d := disasm(c.src, ExprOptions)
		for _, w := range c.want {
			if !strings.Contains(d, w) {
				t.Errorf("%s: no %s in\n%s", c.src, w, d)
			}
		}
		for _, n := range c.not {
			if strings.Contains(d, n) {
				t.Errorf("%s: %s in\n%s", c.src, n, d)
			}
		}
	}
	// Left alone: optional chaining and $env.
	for _, src := range []string{`order?.total`, `$env.order`} {
		if fast, plain := disasm(src, ExprOptions), disasm(src, exprOptions); fast != plain {
			t.Errorf("%s was rewritten:\n%s", src, fast)
		}
	}
}

// BenchmarkFastPaths evaluates a condition shaped like the bench's with
// and without the fast paths.
func BenchmarkFastPaths(b *testing.B) {
	src := `event.reason in ["carrier_delay", "weather"] && date(event.eta) > date(order.promised_at) + duration("2h") && customer.tier in ["gold", "platinum"] && order.total >= 1000`
	for _, c := range []struct {
		name string
		opts func(map[string]any) []expr.Option
	}{{"plain", exprOptions}, {"fast", ExprOptions}} {
		b.Run(c.name, func(b *testing.B) {
			env := NewEnv([]string{"order"}, Funcs{})
			p, err := expr.Compile(src, c.opts(env)...)
			if err != nil {
				b.Fatal(err)
			}
			for k, v := range fastPathData()[0] {
				env[k] = v
			}
			var m vm.VM
			b.ReportAllocs()
			for b.Loop() {
				if out, err := m.Run(p, env); err != nil || out != true {
					b.Fatal(out, err)
				}
			}
		})
	}
}
