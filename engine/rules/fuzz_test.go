package rules

import (
	"errors"
	"github.com/expr-lang/expr"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/expr-lang/expr/vm"
	"gopkg.in/yaml.v3"
)

// The fuzz targets of the rule loader. Each runs over its seed corpus
// (testdata/fuzz/<Name>) in a plain `go test`; .ci/run also runs each with
// -fuzz for a while.

// FuzzLoad loads arbitrary bytes as a rule file: the loader must never
// panic, and every problem it reports is one "file:line:col: message" or
// "file: message" line.
func FuzzLoad(f *testing.F) {
	// One file, rewritten for each input: a worker runs its inputs one at
	// a time, and a directory per input costs more than the load.
	path := filepath.Join(f.TempDir(), "rules.yaml")
	f.Fuzz(func(t *testing.T, src []byte) {
		if err := os.WriteFile(path, src, 0o644); err != nil {
			t.Fatal(err)
		}
		set, err := LoadFiles([]string{path}, Options{Channels: []string{"email", "ops-slack"}, ExtraSubjects: []string{"support.contacts"}})
		if err == nil {
			if set == nil || set.Index == nil {
				t.Fatal("no error and no set")
			}
			for _, r := range set.Rules {
				set.Index.Rules(r.On)
			}
			return
		}
		if set != nil {
			t.Fatal("a set and an error")
		}
		var list *ErrorList
		if !errors.As(err, &list) || len(list.Errors) == 0 {
			t.Fatalf("error is not a non-empty *ErrorList: %#v", err)
		}
		shape := regexp.MustCompile(`^` + regexp.QuoteMeta(path) + `(:[0-9]+:[0-9]+)?: \S`)
		for _, line := range strings.Split(err.Error(), "\n") {
			if !shape.MatchString(line) {
				t.Fatalf("error line %q is not file:line:col: message", line)
			}
		}
	})
}

// fuzzData is hostile template data: the long string big, a list of a
// thousand references to it (kilobytes of memory, a gigabyte of text), the
// number n to range over, maps nested depth deep, and the helpers of the
// expression environment as func values. Each call builds new maps (big is
// shared: strings are immutable).
func fuzzData(big string, n int64, depth byte) map[string]any {
	refs := make([]any, 1000)
	for i := range refs {
		refs[i] = big
	}
	deep := map[string]any{"a": 1}
	for range int(depth) * 25 {
		deep = map[string]any{"a": deep, "b": []any{deep}}
	}
	return map[string]any{
		EnvEvent:    map[string]any{"order_id": "o-1", "eta": "2026-11-23T12:00:00Z", "note": "a<b>&'\"\x00é", "big": big, "n": n, "list": []any{3, 2.5, "x", nil, true, map[string]any{}}, "deep": deep},
		EnvMsg:      map[string]any{"subject": "orders.created", "id": "seq-1", "time": time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)},
		"order":     map[string]any{"order_id": "o-1", "customer_id": "c-1", "skus": []any{"a", "b"}, "total": 1200, "nested": deep},
		EnvCustomer: map[string]any{"name": "ann", "email": "ann@example.com", "locale": "ru"},
		EnvVars:     map[string]any{"new_eta": "2026-11-23", "items": []any{"a", "b"}, "refs": refs},
		EnvRule:     "fuzz",
		"now":       time.Now,
		"sent":      func(string, string) bool { return false },
	}
}

// FuzzTemplateRender compiles a template through the loader (a rule file
// holding it) and renders it with hostile data: no panic, and no part
// longer than MaxRenderedSize — a template that would print more, loop
// more than MaxTemplateSteps times or call itself is an error instead.
func FuzzTemplateRender(f *testing.F) {
	// The long strings, made once: the fuzz engine picks a size.
	sizes := []string{"", strings.Repeat("x", 1<<10), strings.Repeat("é", 40<<10), strings.Repeat("<&>", 1<<20)}
	path := filepath.Join(f.TempDir(), "t.yaml") // see FuzzLoad
	f.Fuzz(func(t *testing.T, body, subject string, size uint32, n int64, depth byte) {
		doc := map[string]any{"templates": map[string]any{"t": map[string]any{
			"en": map[string]any{"subject": subject, "body": body},
		}}}
		src, err := yaml.Marshal(doc)
		if err != nil {
			return // not representable in YAML
		}
		if err := os.WriteFile(path, src, 0o644); err != nil {
			t.Fatal(err)
		}
		set, err := LoadFiles([]string{path}, Options{})
		if err != nil {
			return // a template that does not parse is reported, not rendered
		}
		data := fuzzData(sizes[size%uint32(len(sizes))], n, depth)
		r, err := set.Templates["t"].Render("en", "en", data)
		// A plain body (fastrender.go) renders exactly as text/template.
		// (A failing subject ends the render before the body.)
		part := set.Templates["t"].Locales["en"].Body
		if subjectFailed := err != nil && strings.Contains(err.Error(), ".subject: "); part != nil && !subjectFailed && planPlain(part) != nil {
			want, werr := executeSlow(part, data)
			if (werr != nil) != (err != nil) || (err == nil && r.Body != want) {
				t.Fatalf("plain body: Render %q, %v; text/template %q, %v", r.Body, err, want, werr)
			}
		}
		if err != nil {
			if strings.Contains(err.Error(), ": panic: ") {
				t.Fatalf("render panicked: %v", err)
			}
			return
		}
		for part, s := range map[string]string{"subject": r.Subject, "body": r.Body, "html": r.HTML} {
			if len(s) > MaxRenderedSize {
				t.Fatalf("%s is %d bytes, over the %d cap", part, len(s), MaxRenderedSize)
			}
		}
	})
}

// FuzzExpr compiles an arbitrary expression exactly as the loader compiles
// an `if:` (and, when that fails, as a value: `vars`, `dedup.key`) and runs
// it against hostile data with a zero vm.VM, as the engine does. Neither
// step may panic, and no expression builds a string over MaxExprString
// (strings it reads from the data may be longer).
func FuzzExpr(f *testing.F) {
	big := strings.Repeat("x", 1<<20)
	f.Fuzz(func(t *testing.T, src string) {
		env := NewEnv([]string{"order", "customer"}, Funcs{
			Now:             func() time.Time { return time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC) },
			Sent:            func(string, string) bool { return true },
			CountSent:       func(string, string) int { return 2 },
			ContactedWithin: func(time.Duration) bool { return false },
		})
		p, err := compileExpr(src, env, true)
		if err != nil {
			if p, err = compileExpr(src, env, false); err != nil {
				return
			}
		}
		// An expression that passes the check compiles with the fast
		// paths (exprfast.go) too.
		if len(src) <= MaxExprSource {
			if _, err := expr.Compile(src, baseOptions(env)...); err == nil {
				if _, err := expr.Compile(src, ExprOptions(env)...); err != nil {
					t.Fatalf("checks, but does not compile with the fast paths: %v", err)
				}
			}
		}
		data := fuzzData(big, 1<<40, 8)
		for _, k := range []string{EnvEvent, EnvMsg, "order", EnvCustomer} {
			env[k] = data[k]
		}
		var m vm.VM
		for range 2 { // the engine reuses its VM
			out, err := m.Run(p, env)
			if err != nil {
				continue
			}
			if s, ok := out.(string); ok && len(s) > MaxExprString && !fromData(s, data) {
				t.Fatalf("expression built a string of %d bytes", len(s))
			}
		}
	})
}

// fromData reports whether s is no longer than the longest string of the
// fuzz data, up to the growth of a case change: it may have been read (or
// sliced, upper-cased, trimmed) rather than built.
func fromData(s string, data map[string]any) bool {
	return len(s) <= 3*len(data[EnvEvent].(map[string]any)["big"].(string))
}
