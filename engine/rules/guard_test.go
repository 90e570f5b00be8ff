package rules

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/expr-lang/expr/vm"
)

// loadString loads one rule file with the given content.
func loadString(t *testing.T, src string) (*Set, error) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "r.yaml")
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return LoadFiles([]string{path}, Options{})
}

const guardEntities = `
entities:
  order: { key: event.order_id, subjects: ["orders.>"] }
templates: { t: { en: { body: hi } } }
`

func ruleWithIf(cond string) string {
	return guardEntities + fmt.Sprintf(`
rules:
  - name: r
    on: orders.created
    entity: order
    if: %q
    notify: { channel: console, template: t }
`, cond)
}

func TestExpressionSizeLimits(t *testing.T) {
	for _, c := range []struct{ name, cond, want string }{
		{"source", "order.x == \"" + strings.Repeat("a", MaxExprSource) + "\"", `r.yaml:10:9: rule "r": if: expression is 4109 bytes, the limit is 4096`},
		{"nodes", strings.Repeat("1+", 1500) + "1 > 0", "compilation failed: expression exceeds maximum allowed nodes"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := loadString(t, ruleWithIf(c.cond))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want %q", err, c.want)
			}
		})
	}
	// Just under the source limit is fine.
	cond := "order.x == \"" + strings.Repeat("a", MaxExprSource-14) + "\""
	if _, err := loadString(t, ruleWithIf(cond)); err != nil {
		t.Fatalf("%d bytes: %v", len(cond), err)
	}
}

func TestExpressionGivingAFunctionIsAnError(t *testing.T) {
	_, err := loadString(t, guardEntities+`
rules:
  - name: r
    on: orders.created
    entity: order
    notify: { channel: console, template: t, vars: { when: now } }
`)
	if err == nil || !strings.Contains(err.Error(), `vars.when: expression gives a function: call it, e.g. now()`) {
		t.Fatalf("err = %v", err)
	}
}

// TestExpressionMemoryIsBounded runs expressions that would build
// gigabytes with a zero vm.VM, as the engine does: each is an error, and
// none takes long.
func TestExpressionMemoryIsBounded(t *testing.T) {
	env := NewEnv([]string{"order"}, Funcs{})
	big := strings.Repeat("x", 1<<20)
	env[EnvEvent] = map[string]any{"big": big, "note": "abc"}
	for _, c := range []struct{ src, want string }{
		{`map(1..100000000, #)`, "memory budget exceeded"}, // expr's own budget
		{`concat(1..999999, 1..999999)`, "memory budget exceeded"},
		{`all(1..999999, all(1..999999, true))`, "memory budget exceeded"},
		{`repeat("x", 1000000000)`, "string longer than 65536 bytes"},
		{`repeat(repeat("x", 999999), 999999)`, "string longer than 65536 bytes"},
		{`let a = repeat("x", 60000); let b = a + a; b + b`, "string longer than 65536 bytes"},
		{`reduce(1..999999, #acc + "xxxxxxxxxxxxxxxx", "")`, "string longer than 65536 bytes"},
		{`event.big + "x"`, "string longer than 65536 bytes"},
		{`join(map(1..1000, event.big), "")`, "join: string longer than 65536 bytes"},
		{`toJSON(map(1..1000, event.big))`, "toJSON: string longer than 65536 bytes"},
		{`string(map(1..1000, event.big))`, "string: string longer than 65536 bytes"},
		{`replace(event.note, "", repeat("y", 60000))`, "replace: string longer than 65536 bytes"},
	} {
		p, err := compileExpr(c.src, env, false)
		if err != nil {
			t.Errorf("%s: compile: %v", c.src, err)
			continue
		}
		var m vm.VM
		out, err := m.Run(p, env)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s = %.40v, %v; want error %q", c.src, out, err, c.want)
		}
	}
	if errors.Is(fmt.Errorf("x: %w", ErrExprStringTooLarge), ErrExprStringTooLarge) == false {
		t.Fatal("ErrExprStringTooLarge does not wrap")
	}
}

// TestGuardedBuiltinsKeepTheirMeaning: the size-checked replacements of
// expr's builtins, and the check around +, give what the originals give.
func TestGuardedBuiltinsKeepTheirMeaning(t *testing.T) {
	env := NewEnv([]string{"order"}, Funcs{})
	env[EnvEvent] = map[string]any{"id": "o-1", "n": 2, "eta": "2026-11-23", "list": []any{"a", "b"}}
	for src, want := range map[string]any{
		`repeat("ab", 3)`:              "ababab",
		`repeat("", 1000000000)`:       "",
		`join(["a", "b"], ", ")`:       "a, b",
		`join(["a", "b"])`:             "ab",
		`join(event.list, "/")`:        "a/b",
		`replace("aaa", "a", "bb")`:    "bbbbbb",
		`replace("aaa", "a", "bb", 2)`: "bbbba",
		`replace("abc", "", "-")`:      "-a-b-c-",
		`toJSON({"a": 1})`:             "{\n  \"a\": 1\n}",
		`string(12)`:                   "12",
		`string([1, "a"])`:             "[1 a]",
		`event.id + "/" + event.eta`:   "o-1/2026-11-23",
		`"a" + "b"`:                    "ab",
		`event.n + 1`:                  3,
		`1 + 2`:                        3,
		`(date("2026-01-01") + duration("1h")).Hour()`: 1,
	} {
		p, err := compileExpr(src, env, false)
		if err != nil {
			t.Errorf("%s: %v", src, err)
			continue
		}
		if got := run(t, p, env); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s = %#v, want %#v", src, got, want)
		}
	}
	// Type checking still sees through the guard around +.
	for _, src := range []string{`"a" + 1`, `("a" + "b") > 3`, `("a" + "b").Foo()`, `len(("a" + "b") + 1)`} {
		if _, err := compileExpr(src, env, false); err == nil {
			t.Errorf("%s compiled", src)
		}
	}
	// The guards cannot be named as entities.
	_, err := loadString(t, "entities:\n  __str_limit: { key: event.x, subjects: [a.b] }\n")
	if err == nil || !strings.Contains(err.Error(), "is reserved") {
		t.Errorf("err = %v", err)
	}
}

func TestCheckValue(t *testing.T) {
	big := strings.Repeat("x", 1<<20)
	refs := make([]any, 1000)
	for i := range refs {
		refs[i] = big
	}
	for _, c := range []struct {
		v    any
		want string
	}{
		{map[string]any{"eta": "2026-11-23", "items": []any{"a", 1}}, ""},
		{strings.Repeat("é", 10_000), ""},
		{refs, "larger than 65536 bytes"},
		{strings.Repeat("x", MaxExprString), "larger than 65536 bytes"}, // the quotes
		{[]any{func() {}}, "cannot be encoded as JSON"},
	} {
		err := CheckValue(c.v)
		if (c.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.want)) {
			t.Errorf("CheckValue(%.30v) = %v, want %q", c.v, err, c.want)
		}
	}
}

func TestTemplateWorkIsBounded(t *testing.T) {
	big := strings.Repeat("x", 1<<20)
	refs := make([]any, 1000)
	for i := range refs {
		refs[i] = big
	}
	data := map[string]any{"event": map[string]any{"n": 1 << 40, "big": big}, "vars": map[string]any{"refs": refs}}
	for _, c := range []struct {
		src  string
		want error
	}{
		{`{{ range 1000000000 }}{{ end }}`, ErrTooManySteps},
		{`{{ range .event.n }}{{ end }}`, ErrTooManySteps},
		{`{{ range 300 }}{{ range 300 }}{{ range 300 }}{{ end }}{{ end }}{{ end }}`, ErrTooManySteps},
		{`{{ define "a" }}{{ end }}{{ define "b" }}` + strings.Repeat(`{{ template "a" }}`, 20) + `{{ end }}{{ define "c" }}` + strings.Repeat(`{{ template "b" }}`, 20) + `{{ end }}{{ define "d" }}` + strings.Repeat(`{{ template "c" }}`, 20) + `{{ end }}{{ define "e" }}` + strings.Repeat(`{{ template "d" }}`, 20) + `{{ end }}{{ template "e" }}`, ErrTooManySteps},
		{`{{ .vars.refs }}`, ErrOutputTooLarge},
		{`{{ .event.big }}`, ErrOutputTooLarge},
		{`{{ print .vars.refs }}`, ErrOutputTooLarge},
		{`{{ println .vars.refs }}`, ErrOutputTooLarge},
		{`{{ printf "%v" .vars.refs }}`, ErrOutputTooLarge},
		{`{{ printf "%[1]s%[1]s" .event.big }}`, ErrOutputTooLarge},
		{`{{ printf "%01000000d" 1 }}`, ErrOutputTooLarge},
		{`{{ printf "%.1000000f" 1.5 }}`, ErrOutputTooLarge},
		{`{{ html .vars.refs }}`, ErrOutputTooLarge},
		{`{{ js .vars.refs }}`, ErrOutputTooLarge},
		{`{{ urlquery .vars.refs }}`, ErrOutputTooLarge},
		{`{{ join "" .vars.refs }}`, ErrOutputTooLarge},
		{`{{ upper .vars.refs }}`, ErrOutputTooLarge},
		{`{{ truncate 5 .vars.refs }}`, ErrOutputTooLarge},
	} {
		tm := mkTemplate(t, "w", [2]string{"en", c.src})
		r, err := tm.Render("en", "en", data)
		if !errors.Is(err, c.want) {
			t.Errorf("%.70s: %d bytes, %v; want %v", c.src, len(r.Body), err, c.want)
		}
	}
	// Loops and calls within the budget work, every render afresh.
	tm := mkTemplate(t, "ok", [2]string{"en", `{{ define "d" }}<{{ . }}>{{ end }}{{ range 3 }}{{ template "d" . }}{{ end }}{{ printf "%05d|%-4s|%.2f" 42 "ab" 1.234 }}`})
	for range 3 {
		if r, err := tm.Render("en", "en", nil); err != nil || r.Body != "<0><1><2>00042|ab  |1.23" {
			t.Fatalf("body = %q, %v", r.Body, err)
		}
	}
}

// TestStepCountingIsPerRender: concurrent renders of one template each get
// the whole budget (the counting copies are pooled, one per render).
func TestStepCountingIsPerRender(t *testing.T) {
	tm := mkTemplate(t, "c", [2]string{"en", `{{ range .n }}{{ end }}{{ len .s }}`})
	var wg sync.WaitGroup
	for g := range 2 {
		wg.Go(func() {
			for i := range 2 {
				n := MaxTemplateSteps - 1 // just within the budget
				if (g+i)%2 == 0 {
					n = MaxTemplateSteps + 1
				}
				_, err := tm.Render("en", "en", map[string]any{"n": n, "s": "abc"})
				if over := n > MaxTemplateSteps; over != errors.Is(err, ErrTooManySteps) {
					t.Errorf("range %d: %v", n, err)
				}
			}
		})
	}
	wg.Wait()
}

func TestRecursiveTemplatesAreRefused(t *testing.T) {
	for _, src := range []string{
		`{{ define "a" }}{{ template "a" }}{{ end }}{{ template "a" }}`,
		`{{ define "a" }}{{ if .x }}{{ template "b" }}{{ end }}{{ end }}{{ define "b" }}{{ range .y }}{{ template "a" }}{{ end }}{{ end }}x`,
		`{{ block "a" . }}{{ template "a" . }}{{ end }}`,
	} {
		_, err := loadString(t, "templates: { t: { en: { body: '"+strings.ReplaceAll(src, "'", "''")+"' } } }\n")
		if err == nil || !strings.Contains(err.Error(), "calls itself: recursion is not allowed") {
			t.Errorf("%s: err = %v", src, err)
		}
	}
}

// TestLoaderErrorsAreOneLineEach: a message quoting a value with a line
// break (here cron's) is escaped, not split.
func TestLoaderErrorsAreOneLineEach(t *testing.T) {
	_, err := loadString(t, guardEntities+`
rules:
  - name: r
    schedule: "@every\nday"
    for_each: order
    notify: { channel: console, template: t }
`)
	var list *ErrorList
	if !errors.As(err, &list) || len(list.Errors) != 1 {
		t.Fatalf("err = %v", err)
	}
	if msg := list.Errors[0].Error(); strings.Contains(msg, "\n") || !strings.Contains(msg, `@every\nday`) {
		t.Errorf("message %q", msg)
	}
}

// TestMergesOfMergesAreLinear: a "billion laughs" of YAML merge keys, which
// would expand to 8^12 entries if each merge were expanded where it is
// used, loads at once.
func TestMergesOfMergesAreLinear(t *testing.T) {
	var b strings.Builder
	b.WriteString("rules:\n  - name: r\n    description: &l0 {channel: console}\n")
	for i := 1; i <= 12; i++ {
		fmt.Fprintf(&b, "  - name: r%d\n    description: &l%d {<<: [%s]}\n", i, i, strings.TrimSuffix(strings.Repeat(fmt.Sprintf("*l%d, ", i-1), 8), ", "))
	}
	b.WriteString("  - name: last\n    on: orders.created\n    entity: order\n    notify: {<<: *l12, template: t}\n")
	_, err := loadString(t, guardEntities+b.String())
	if err == nil {
		t.Fatal("loaded")
	}
	// The file's only problems are the descriptions that are maps and the
	// rules without on/notify; the merged notify is fine.
	if strings.Contains(err.Error(), `rule "last"`) {
		t.Errorf("merged notify rejected: %v", err)
	}
}

// TestSizeEstimateIsAnUpperBound: what the output guards estimate is never
// less than what fmt (%v) and json.MarshalIndent really print.
func TestSizeEstimateIsAnUpperBound(t *testing.T) {
	deep := map[string]any{"a": 1}
	for range 8 { // shared twice per level: 2^8 copies when printed
		deep = map[string]any{"k": deep, "l": []any{deep, "x"}}
	}
	long := time.Date(2026, 11, 20, 10, 0, 0, 123456789, mustZone(t, "America/Argentina/ComodRivadavia"))
	for _, v := range []any{
		nil, "", "héllo \x00\x1f\"<>&\u2028", 0, -9223372036854775808, 1.0 / 3, -1.2345678901234567e-308, true,
		[]any{}, map[string]any{}, []any{nil, 1, "a", []any{map[string]any{"x": nil}}},
		map[string]any{"e\"s\ncaped": "\u00e9\u00e9", "n": []string{"a", "b"}},
		time.Now(), long, time.Duration(-1 << 63), []time.Time{long, long},
		map[string]int{"a": 1}, []int64{1, 2, 3}, [2]bool{true, false}, struct{ A, B string }{"x", "y"},
		deep["k"].(map[string]any)["k"],
	} {
		for _, asJSON := range []bool{false, true} {
			s := sizer{left: 1 << 40, json: asJSON}
			s.value(v, 0)
			est := 1<<40 - s.left
			var exact int
			if asJSON {
				b, err := json.MarshalIndent(v, "", "  ")
				if err != nil {
					continue
				}
				exact = len(b)
			} else {
				exact = len(fmt.Sprintf("%v", v))
			}
			if exact > est {
				t.Errorf("%.60v (json %v): printed %d bytes, estimated %d", v, asJSON, exact, est)
			}
		}
	}
}

func mustZone(t *testing.T, name string) *time.Location {
	t.Helper()
	l, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return l
}
