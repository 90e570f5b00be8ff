package notifiers_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/proactived/proactived/notifiers"
)

type inner struct {
	Name string `yaml:"name" required:"true"`
}

type sample struct {
	URL      string            `yaml:"url" required:"true"`
	Port     int               `yaml:"port"`
	Ratio    float64           `yaml:"ratio"`
	On       bool              `yaml:"on"`
	Wait     time.Duration     `yaml:"wait"`
	Password notifiers.Secret  `yaml:"password"`
	Args     []string          `yaml:"args"`
	Headers  map[string]string `yaml:"headers"`
	Inner    *inner            `yaml:"inner"`
	Raw      *yaml.Node        `yaml:"raw"`
	Ignored  string            `yaml:"-"`
	Default  string
}

func node(t *testing.T, src string) *yaml.Node {
	t.Helper()
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(src), &doc); err != nil {
		t.Fatal(err)
	}
	return &doc // DecodeStrict unwraps the document node
}

func TestDecodeStrictValues(t *testing.T) {
	var s sample
	err := notifiers.DecodeStrict(node(t, `
url: https://x
port: 2525
ratio: 0.5
on: true
wait: 1m30s
password: hunter2
args: [a, b]
headers: {X-A: "1"}
inner: {name: n}
raw: {anything: [1, 2]}
default: yes-lowercased-name
`), &s)
	if err != nil {
		t.Fatal(err)
	}
	if s.URL != "https://x" || s.Port != 2525 || s.Ratio != 0.5 || !s.On || s.Wait != 90*time.Second ||
		s.Password.Reveal() != "hunter2" || len(s.Args) != 2 || s.Headers["X-A"] != "1" ||
		s.Inner == nil || s.Inner.Name != "n" || s.Raw == nil || s.Raw.Kind != yaml.MappingNode || s.Default != "yes-lowercased-name" {
		t.Errorf("decoded %+v", s)
	}
}

func TestDecodeStrictEmpty(t *testing.T) {
	type none struct{}
	for _, n := range []*yaml.Node{nil, {}, node(t, ""), node(t, "~"), node(t, "{}")} {
		var v none
		if err := notifiers.DecodeStrict(n, &v); err != nil {
			t.Errorf("%v: %v", n, err)
		}
	}
	var s sample
	err := notifiers.DecodeStrict(nil, &s)
	if err == nil || err.Error() != `missing required key "url"` {
		t.Errorf("nil node, required key: %v", err)
	}
}

func TestDecodeStrictErrors(t *testing.T) {
	src := `url: https://x
urll: typo
port: many
password: [hunter2]
wait: soon
args: notalist
inner: {name: n, extra: 1}
url: again
`
	var s sample
	err := notifiers.DecodeStrict(node(t, src), &s)
	if err == nil {
		t.Fatal("want errors")
	}
	want := []string{
		`line 2:1: unknown key "urll"`,
		`line 3:7: key "port": want an integer, got "many"`,
		`line 4:11: key "password": want a string, got a list`,
		`line 5:7: key "wait": want a duration such as "10s", got "soon"`,
		`line 6:7: key "args": want a list, got a scalar`,
		`line 7:18: unknown key "inner.extra"`,
		`line 8:1: duplicate key "url"`,
	}
	if got := strings.Split(err.Error(), "\n"); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("errors:\n%s\nwant:\n%s", err, strings.Join(want, "\n"))
	}
	var ce *notifiers.ConfigError
	if !errors.As(err, &ce) || ce.Line != 2 || ce.Column != 1 {
		t.Errorf("errors.As ConfigError: %+v", ce)
	}
	if strings.Contains(err.Error(), "hunter2") {
		t.Error("secret value in error")
	}
}

func TestDecodeStrictMissingAndEmpty(t *testing.T) {
	var s sample
	err := notifiers.DecodeStrict(node(t, "port: 1\ninner: {}\n"), &s)
	want := "line 1:1: missing required key \"url\"\nline 2:8: missing required key \"inner.name\""
	if err == nil || err.Error() != want {
		t.Errorf("err = %v, want %s", err, want)
	}
	err = notifiers.DecodeStrict(node(t, "url: \"\"\n"), &s)
	if err == nil || err.Error() != `line 1:6: key "url": must not be empty` {
		t.Errorf("err = %v", err)
	}
}

func TestDecodeStrictRejectsNonStruct(t *testing.T) {
	var m map[string]string
	if err := notifiers.DecodeStrict(node(t, "a: b"), &m); err == nil {
		t.Error("want an error for a map target")
	}
}

func TestErrorAt(t *testing.T) {
	n := node(t, "url: ftp://x\n")
	if got := notifiers.ErrorAt(n, "url", "want %s", "http").Error(); got != `line 1:6: key "url": want http` {
		t.Errorf("got %q", got)
	}
	if got := notifiers.ErrorAt(n, "absent", "needed").Error(); got != `line 1:1: key "absent": needed` {
		t.Errorf("got %q", got)
	}
	if got := notifiers.ErrorAt(nil, "k", "m").Error(); got != `key "k": m` {
		t.Errorf("got %q", got)
	}
}

func TestSecretFormatting(t *testing.T) {
	type cfg struct{ Password notifiers.Secret }
	c := cfg{Password: "hunter2"}
	for _, s := range []string{fmt.Sprint(c), fmt.Sprintf("%+v", c), fmt.Sprintf("%#v", c), fmt.Sprintf("%v", &c)} {
		if strings.Contains(s, "hunter2") {
			t.Errorf("leaked: %s", s)
		}
	}
}

func TestSnippet(t *testing.T) {
	for _, tc := range []struct {
		in   string
		max  int
		want string
	}{
		{"short", 10, "short"},
		{"  a\n\n b\tc  ", 20, "a b c"},
		{"abcdef", 3, "abc…"},
		{"жжж", 3, "ж…"}, // never splits a rune
		{"\xff\xfe", 10, "??"},
	} {
		if got := notifiers.Snippet([]byte(tc.in), tc.max); got != tc.want {
			t.Errorf("Snippet(%q, %d) = %q, want %q", tc.in, tc.max, got, tc.want)
		}
	}
}

func TestScrub(t *testing.T) {
	if got := notifiers.Scrub("a tok b tok", "tok", ""); got != "a <secret> b <secret>" {
		t.Errorf("got %q", got)
	}
}
