package rules

import (
	"slices"
	"strings"
	"testing"

	"github.com/expr-lang/expr/builtin"
	"github.com/expr-lang/expr/vm"
)

// The claims of docs/security.md about what a rule author can and cannot
// do, checked on the loader.

// pureBuiltins are expr's builtins as of v1.17, reviewed: each computes on
// its arguments only (timezone and date read the time-zone database, which
// time.LoadLocation confines to zone names). A new builtin in an expr
// upgrade fails TestExprBuiltinsAreReviewed until it is reviewed and added
// here and in docs/security.md.
var pureBuiltins = []string{
	"all", "none", "any", "one", "filter", "map", "find", "findIndex", "findLast", "findLastIndex", "count", "sum",
	"groupBy", "sortBy", "reduce", "len", "type", "abs", "ceil", "floor", "round", "int", "float", "string", "trim",
	"trimPrefix", "trimSuffix", "upper", "lower", "split", "splitAfter", "replace", "repeat", "join", "indexOf",
	"lastIndexOf", "hasPrefix", "hasSuffix", "max", "min", "mean", "median", "toJSON", "fromJSON", "toBase64",
	"fromBase64", "now", "duration", "date", "timezone", "first", "last", "get", "take", "keys", "values", "toPairs",
	"fromPairs", "reverse", "uniq", "concat", "flatten", "sort", "bitand", "bitor", "bitxor", "bitnand", "bitshl",
	"bitshr", "bitushr", "bitnot",
}

func TestExprBuiltinsAreReviewed(t *testing.T) {
	for _, f := range builtin.Builtins {
		if !slices.Contains(pureBuiltins, f.Name) {
			t.Errorf("expr has a new builtin %q: review it (docs/security.md) and add it to pureBuiltins", f.Name)
		}
	}
}

// TestExpressionsHaveNoOSAccess: the environment has data and four
// helpers; nothing names the OS, files, the network or processes, and
// $env (expr's view of the environment) holds only the same.
func TestExpressionsHaveNoOSAccess(t *testing.T) {
	env := NewEnv([]string{"order", "customer"}, Funcs{})
	for _, src := range []string{
		`os.Getenv("HOME")`, `env("HOME")`, `getenv("HOME")`, `exec("ls")`, `system("ls")`, `readFile("/etc/passwd")`,
		`open("/etc/passwd")`, `http.Get("http://example.com")`, `import("os")`, `os.Exit(1)`, `$env.os.Getenv("HOME")`,
		`sprintf("%v", 1)`, `printf("x")`, `load("x")`,
	} {
		if _, err := compileExpr(src, env, false); err == nil {
			t.Errorf("%s compiled", src)
		}
	}
	// $env holds the environment: data and the four helpers, no more.
	p, err := compileExpr(`keys($env)`, env, false)
	if err != nil {
		t.Fatal(err)
	}
	var m vm.VM
	out, err := m.Run(p, env)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, k := range out.([]any) {
		names = append(names, k.(string))
	}
	slices.Sort(names)
	if want := []string{"contacted_within", "count_sent", "customer", "event", "msg", "now", "order", "sent"}; !slices.Equal(names, want) {
		t.Errorf("$env = %v, want %v", names, want)
	}
}

// TestRuleFilesCannotDefineChannels: channels (and so `exec` programs)
// come from proactived.yaml only. A rule file can name a configured
// channel, never define one or run a command.
func TestRuleFilesCannotDefineChannels(t *testing.T) {
	for _, c := range []struct{ src, want string }{
		{"channels:\n  x: { type: exec, command: [/bin/sh, -c, id] }\n", `unknown key "channels"`},
		{guardEntities + "rules:\n  - name: r\n    on: orders.created\n    entity: order\n    notify: { channel: legacy, template: t }\n", `unknown channel "legacy"`},
		{guardEntities + "rules:\n  - name: r\n    on: orders.created\n    entity: order\n    notify: { command: [/bin/sh], template: t }\n", `unknown key "command"`},
		{guardEntities + "rules:\n  - name: r\n    on: orders.created\n    entity: order\n    exec: id\n    notify: { channel: console, template: t }\n", `unknown key "exec"`},
	} {
		_, err := loadString(t, c.src)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want %q", c.src, err, c.want)
		}
	}
}

// TestTemplatesHaveNoOSAccess: a template has the loader's small FuncMap and
// text/template's own functions; there is no function for files, the
// environment or processes, and `call`, methods and {{ template }} only
// reach the data and the template's own definitions.
func TestTemplatesHaveNoOSAccess(t *testing.T) {
	for _, src := range []string{
		`{{ env "HOME" }}`, `{{ getenv "HOME" }}`, `{{ readFile "/etc/passwd" }}`, `{{ exec "id" }}`, `{{ include "x" }}`,
		`{{ template "/etc/passwd" }}`,
	} {
		s, err := loadString(t, "templates: { t: { en: { body: '"+strings.ReplaceAll(src, "'", "''")+"' } } }\n")
		if err != nil {
			continue // no such function
		}
		// {{ template "name" }} parses: it can only name a definition of
		// the same part, so it fails when executed.
		if _, err := s.Templates["t"].Render("en", "en", nil); err == nil {
			t.Errorf("%s rendered", src)
		}
	}
}
