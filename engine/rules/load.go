package rules

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"text/template"

	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/vm"
	"gopkg.in/yaml.v3"
)

// Options are what a rule set is checked against besides its own files.
type Options struct {
	// Channels are the channel names configured in proactived.yaml; a rule
	// naming another channel is an error. "console" is always known.
	Channels []string
	// DefaultLocale is the locale templates fall back to; "en" if empty.
	DefaultLocale string
	// ExtraSubjects are subjects the daemon consumes besides those of the
	// rules and entities (the support contacts subject); they are part of
	// Set.Subjects.
	ExtraSubjects []string
}

// Load loads every *.yaml file under dir, recursively and in path order,
// except files ending in _test.yaml, directories named "tests" (rule unit
// tests live there) and hidden files and directories (editor droppings, the
// "..data" of a Kubernetes ConfigMap mount). Symlinked files are followed,
// symlinked directories are not. dir may also name a single file. A
// directory with no rule files gives an empty set.
//
// Loading is all or nothing: on any problem Load returns a nil set and an
// *ErrorList with every problem found, each with its position.
func Load(dir string, opts Options) (*Set, error) {
	files, err := ruleFiles(dir)
	if err != nil {
		return nil, &ErrorList{Errors: []Error{{Pos: Pos{File: dir}, Msg: fsMessage(err)}}}
	}
	return load(files, opts)
}

// LoadFiles is Load for a given list of files (sorted and de-duplicated
// first).
func LoadFiles(files []string, opts Options) (*Set, error) {
	fs := slices.Clone(files)
	sort.Strings(fs)
	return load(slices.Compact(fs), opts)
}

// Subjects is every subject the rule set needs captured: entity subjects,
// rule `on` and `expect` subjects and Options.ExtraSubjects, reduced so that
// no two overlap (JetStream refuses a stream whose subjects do): a subject
// another covers is dropped ({"orders.>", "orders.created"} gives
// {"orders.>"}), and two that partially overlap are merged into one that
// covers both ("orders.*.paid" and "orders.eu.*" give "orders.*.*"). Sorted.
func (s *Set) Subjects() []string { return slices.Clone(s.subjects) }

// Schedules returns the scheduled rules, in file order.
func (s *Set) Schedules() []*Rule { return slices.Clone(s.schedules) }

func ruleFiles(dir string) ([]string, error) {
	st, err := os.Stat(dir)
	if err != nil {
		return nil, err
	}
	if !st.IsDir() {
		return []string{dir}, nil
	}
	var files []string
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if path != dir && (name == "tests" || strings.HasPrefix(name, ".")) {
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasPrefix(name, ".") || !strings.HasSuffix(name, ".yaml") || strings.HasSuffix(name, "_test.yaml") {
			return nil
		}
		if d.Type()&fs.ModeSymlink != 0 {
			st, err := os.Stat(path)
			if err != nil {
				return err
			}
			if !st.Mode().IsRegular() {
				return nil
			}
		} else if !d.Type().IsRegular() {
			return nil
		}
		files = append(files, path)
		return nil
	})
	sort.Strings(files)
	return files, err
}

// fsMessage is an fs error without the operation and path the position
// already gives.
func fsMessage(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

// loader holds the state of one Load.
type loader struct {
	opts  Options
	set   *Set
	errs  []Error
	funcs template.FuncMap

	broken bool // a file could not be read or parsed: skip cross-file checks

	entityAt, ruleAt, templateAt map[string]Pos // where each name was first defined

	later []func() // checks and compilations that need every file

	env, keyEnv, whereEnv map[string]any // expression environments, built after the last file
}

func load(files []string, opts Options) (*Set, error) {
	if opts.DefaultLocale == "" {
		opts.DefaultLocale = "en"
	}
	l := &loader{
		opts: opts,
		set: &Set{
			Entities:      map[string]*Entity{},
			ByName:        map[string]*Rule{},
			Templates:     map[string]*Template{},
			DefaultLocale: opts.DefaultLocale,
		},
		funcs:      templateFuncs(),
		entityAt:   map[string]Pos{},
		ruleAt:     map[string]Pos{},
		templateAt: map[string]Pos{},
	}
	for _, s := range opts.ExtraSubjects {
		if err := ValidSubject(s); err != nil {
			l.errs = append(l.errs, Error{Msg: "extra subject: " + err.Error()})
		}
	}
	for _, f := range files {
		l.file(f)
	}
	if !l.broken {
		l.resolve()
	}
	if len(l.errs) > 0 {
		list := &ErrorList{Errors: l.errs}
		list.sort()
		return nil, list
	}
	s := l.set
	var subjects []string
	for _, e := range s.Entities {
		subjects = append(subjects, e.Subjects...)
	}
	for _, r := range s.Rules {
		subjects = append(subjects, r.On, r.Expect)
		if r.Kind == KindSchedule {
			s.schedules = append(s.schedules, r)
		}
	}
	subjects = append(subjects, opts.ExtraSubjects...)
	s.subjects = reduceSubjects(subjects)
	s.Index = NewIndex(s.Rules, s.Entities)
	dropTrees(s)
	return s, nil
}

// add records a problem. Line breaks in the message (a YAML string quoted
// back, a library's multi-line error) are escaped: each problem is one
// "file:line:col: message" line.
func (l *loader) add(p Pos, msg string) {
	msg = strings.NewReplacer("\r", `\r`, "\n", `\n`).Replace(msg)
	l.errs = append(l.errs, Error{Pos: p, Msg: msg})
}

// file reads and decodes one file; what it declares goes into l.set.
func (l *loader) file(path string) {
	l.set.Files = append(l.set.Files, path)
	src, err := os.ReadFile(path)
	if err != nil {
		l.add(Pos{File: path}, fsMessage(err))
		l.broken = true
		return
	}
	f := &fileLoader{l: l, path: path, src: src}
	dec := yaml.NewDecoder(bytes.NewReader(src))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if err != io.EOF { // io.EOF: empty, or only comments
			f.yamlError(err)
		}
		return
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case err == io.EOF:
	case err != nil:
		f.yamlError(err)
	default:
		// A trailing "---" with nothing after it is harmless; anything
		// more would be silently ignored, so it is an error.
		if len(extra.Content) > 0 && !isNull(extra.Content[0]) {
			l.add(f.pos(&extra), "a second document (---) is not allowed: one document per file")
		}
	}
	f.top(&doc)
}

// yamlError reports a YAML syntax error. yaml.v3 gives a line, not a column.
func (f *fileLoader) yamlError(err error) {
	f.l.broken = true
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	p := Pos{File: f.path}
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if num, m, ok := strings.Cut(rest, ": "); ok {
			if n, err := strconv.Atoi(num); err == nil {
				p.Line, p.Col, msg = n, 1, m
			}
		}
	}
	f.l.add(p, msg)
}

// resolve runs everything that needs all files: name references and
// expression compilation (which needs every entity name).
func (l *loader) resolve() {
	names := make([]string, 0, len(l.set.Entities))
	for n := range l.set.Entities {
		names = append(names, n)
	}
	sort.Strings(names)
	l.env = NewEnv(names, Funcs{})
	l.keyEnv = map[string]any{EnvEvent: l.env[EnvEvent], EnvMsg: l.env[EnvMsg]}
	l.whereEnv = NewEnv(nil, Funcs{})
	delete(l.whereEnv, EnvCustomer)
	for _, fn := range l.later {
		fn()
	}
}

// compile compiles the expression in scalar n against env, reporting errors
// at their position in the file.
func (l *loader) compile(c ctx, n *yaml.Node, env map[string]any, asBool bool) *vm.Program {
	src := n.Value
	if strings.TrimSpace(src) == "" {
		c.errf(n, "empty expression")
		return nil
	}
	p, err := compileExpr(src, env, asBool)
	if err == nil {
		return p
	}
	pos, msg := c.f.pos(n), err.Error()
	var fe *file.Error
	if errors.As(err, &fe) {
		pos, msg = c.f.exprPos(n, fe.Line, fe.Column), fe.Message
	}
	msg, _, _ = strings.Cut(msg, "\n")
	c.errAt(pos, "%s", msg)
	return nil
}

// exprPos maps a position inside a scalar's value (line 1-based, col
// 0-based) to the file. Exact for single-line plain and quoted scalars
// without escapes and for literal (|) blocks; best effort otherwise.
func (f *fileLoader) exprPos(n *yaml.Node, line, col int) Pos {
	line = clampLine(n, line)
	switch n.Style {
	case yaml.LiteralStyle, yaml.FoldedStyle:
		return Pos{File: f.path, Line: n.Line + line, Col: f.blockIndent(n) + col + 1}
	case yaml.DoubleQuotedStyle, yaml.SingleQuotedStyle:
		return Pos{File: f.path, Line: n.Line, Col: n.Column + 1 + col}
	}
	return Pos{File: f.path, Line: n.Line, Col: n.Column + col}
}

// templatePos maps a template line (1-based) to the file.
func (f *fileLoader) templatePos(n *yaml.Node, line int) Pos {
	if n.Style == yaml.LiteralStyle || n.Style == yaml.FoldedStyle {
		fl := n.Line + clampLine(n, line)
		return Pos{File: f.path, Line: fl, Col: f.indent(fl) + 1}
	}
	return f.pos(n)
}

// clampLine keeps a line number inside a scalar's value: "unexpected EOF"
// is reported on the line after the last.
func clampLine(n *yaml.Node, line int) int {
	last := strings.Count(strings.TrimSuffix(n.Value, "\n"), "\n") + 1
	return max(1, min(line, last))
}

// blockIndent is the indentation of a block scalar's content: that of its
// first non-blank line.
func (f *fileLoader) blockIndent(n *yaml.Node) int {
	f.split()
	for l := n.Line + 1; l <= len(f.lines); l++ {
		if len(bytes.TrimSpace(f.lines[l-1])) > 0 {
			return f.indent(l)
		}
	}
	return 0
}

func (f *fileLoader) split() {
	if f.lines == nil {
		f.lines = bytes.Split(f.src, []byte("\n"))
	}
}

// indent is the number of leading spaces of a file line (1-based).
func (f *fileLoader) indent(line int) int {
	f.split()
	if line < 1 || line > len(f.lines) {
		return 0
	}
	return len(f.lines[line-1]) - len(bytes.TrimLeft(f.lines[line-1], " "))
}

// parseTemplatePart parses one part of a template, reporting parse errors at
// their line in the file.
func (l *loader) parseTemplatePart(c ctx, n *yaml.Node, name string) *template.Template {
	t, err := parseTemplate(name, n.Value, l.funcs)
	if err == nil {
		return t
	}
	msg := err.Error()
	pos := c.f.pos(n)
	if rest, ok := strings.CutPrefix(msg, "template: "+name+":"); ok {
		if num, m, ok := strings.Cut(rest, ": "); ok {
			if line, err := strconv.Atoi(num); err == nil {
				pos, msg = c.f.templatePos(n, line), m
			}
		}
	}
	c.errAt(pos, "%s", msg)
	return nil
}

// knownChannel reports whether a channel is configured.
func (l *loader) knownChannel(name string) bool {
	return name == "console" || slices.Contains(l.opts.Channels, name)
}

// unknown formats an unknown-reference message with a suggestion.
func unknown(what, name string, known []string) string {
	msg := fmt.Sprintf("unknown %s %q", what, name)
	if s := suggest(name, known); s != "" {
		msg += fmt.Sprintf(" (did you mean %q?)", s)
	}
	return msg
}

func keysOf[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
