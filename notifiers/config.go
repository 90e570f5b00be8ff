package notifiers

import (
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// ConfigError is one problem in a channel's configuration, located in the
// YAML source. The config loader can errors.As it (or walk errors.Join's
// Unwrap() []error) to prefix the file name: "proactived.yaml:4:21: …".
//
// Its message never contains the value of a Secret field.
type ConfigError struct {
	Line, Column int    // 1-based; 0 when the position is unknown (nil node)
	Key          string // dotted path of the offending key, "" when Msg names it
	Msg          string
}

func (e *ConfigError) Error() string {
	var b strings.Builder
	if e.Line > 0 {
		fmt.Fprintf(&b, "line %d:%d: ", e.Line, e.Column)
	}
	if e.Key != "" {
		fmt.Fprintf(&b, "key %q: ", e.Key)
	}
	b.WriteString(e.Msg)
	return b.String()
}

// ErrorAt returns a ConfigError positioned at the value of key in the mapping
// node cfg (or at the mapping itself when key is absent, or with no position
// when cfg is nil). Channels use it for validation after DecodeStrict:
//
//	return nil, notifiers.ErrorAt(cfg, "url", "must be an http or https URL")
//
// Never pass a secret's value in format/args.
func ErrorAt(cfg *yaml.Node, key, format string, args ...any) error {
	e := &ConfigError{Key: key, Msg: fmt.Sprintf(format, args...)}
	m := mappingOf(cfg)
	if v := Lookup(m, key); v != nil {
		e.Line, e.Column = v.Line, v.Column
	} else if m != nil {
		e.Line, e.Column = m.Line, m.Column
	}
	return e
}

// Lookup returns the value node of key in a mapping node (nil if absent).
func Lookup(cfg *yaml.Node, key string) *yaml.Node {
	m := mappingOf(cfg)
	if m == nil || m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return resolve(m.Content[i+1])
		}
	}
	return nil
}

// DecodeStrict decodes a channel's mapping node into out, a pointer to a
// struct, rejecting unknown and duplicate keys. Field names come from
// `yaml:"name"` tags (default: the lower-cased field name; "-" skips);
// `required:"true"` makes a key mandatory (absent, null or empty is an error).
//
// Supported field types: string, bool, ints, uints, floats, time.Duration
// (a Go duration string such as "10s"), Secret, slices, maps with string
// keys, nested structs, pointers to those, *yaml.Node (kept raw) and types
// implementing yaml.Unmarshaler.
//
// A nil node, an empty document or a null scalar decode as an empty mapping.
// Every problem is reported, not just the first: the result is a single
// *ConfigError or an errors.Join of them, in source order, each naming the
// key and its line:col. Values of Secret fields never appear in errors.
func DecodeStrict(node *yaml.Node, out any) error {
	rv := reflect.ValueOf(out)
	if rv.Kind() != reflect.Pointer || rv.IsNil() || rv.Elem().Kind() != reflect.Struct {
		return fmt.Errorf("decode config: want a non-nil pointer to a struct, got %T", out)
	}
	d := &decoder{}
	m := mappingOf(node)
	if m == nil {
		d.structFields(&yaml.Node{Kind: yaml.MappingNode}, rv.Elem(), "")
	} else {
		d.value(m, rv.Elem(), "")
	}
	return d.err()
}

// mappingOf unwraps document and alias nodes; nil, zero and null nodes
// become nil.
func mappingOf(n *yaml.Node) *yaml.Node {
	n = resolve(n)
	if n == nil || n.Kind == 0 || isNull(n) {
		return nil
	}
	return n
}

func resolve(n *yaml.Node) *yaml.Node {
	for n != nil {
		switch {
		case n.Kind == yaml.DocumentNode && len(n.Content) == 1:
			n = n.Content[0]
		case n.Kind == yaml.DocumentNode:
			return nil
		case n.Kind == yaml.AliasNode:
			n = n.Alias
		default:
			return n
		}
	}
	return nil
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

type decoder struct{ errs []*ConfigError }

func (d *decoder) add(n *yaml.Node, key, format string, args ...any) {
	e := &ConfigError{Key: key, Msg: fmt.Sprintf(format, args...)}
	if n != nil {
		e.Line, e.Column = n.Line, n.Column
	}
	d.errs = append(d.errs, e)
}

func (d *decoder) err() error {
	if len(d.errs) == 0 {
		return nil
	}
	sort.SliceStable(d.errs, func(i, j int) bool {
		a, b := d.errs[i], d.errs[j]
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Column < b.Column
	})
	if len(d.errs) == 1 {
		return d.errs[0]
	}
	errs := make([]error, len(d.errs))
	for i, e := range d.errs {
		errs[i] = e
	}
	return errors.Join(errs...)
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// quote shows a (non-secret) scalar in an error, shortened.
func quote(s string) string {
	const maxLen = 40
	if r := []rune(s); len(r) > maxLen {
		s = string(r[:maxLen]) + "…"
	}
	return strconv.Quote(s)
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	default:
		return "a scalar"
	}
}

func (d *decoder) value(n *yaml.Node, v reflect.Value, path string) {
	n = resolve(n)
	if n == nil {
		return
	}
	t := v.Type()
	secretType := reflect.TypeFor[Secret]()
	if t == reflect.TypeFor[*yaml.Node]() {
		v.Set(reflect.ValueOf(n))
		return
	}
	if v.CanAddr() && v.Addr().Type().Implements(reflect.TypeFor[yaml.Unmarshaler]()) && t != secretType {
		if err := n.Decode(v.Addr().Interface()); err != nil {
			d.add(n, path, "%s", strings.TrimPrefix(err.Error(), "yaml: "))
		}
		return
	}
	if isNull(n) {
		v.SetZero()
		return
	}
	switch {
	case t == secretType:
		if n.Kind != yaml.ScalarNode {
			d.add(n, path, "want a string, got %s", kindName(n))
			return
		}
		v.SetString(n.Value) // never echoed in errors
		return
	case t == reflect.TypeFor[time.Duration]():
		if n.Kind != yaml.ScalarNode {
			d.add(n, path, "want a duration such as \"10s\", got %s", kindName(n))
			return
		}
		dur, err := time.ParseDuration(n.Value)
		if err != nil {
			d.add(n, path, "want a duration such as \"10s\", got %s", quote(n.Value))
			return
		}
		v.SetInt(int64(dur))
		return
	}
	switch t.Kind() {
	case reflect.Pointer:
		p := reflect.New(t.Elem())
		d.value(n, p.Elem(), path)
		v.Set(p)
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			d.add(n, path, "want a mapping, got %s", kindName(n))
			return
		}
		d.structFields(n, v, path)
	case reflect.Map:
		if t.Key().Kind() != reflect.String {
			d.add(n, path, "unsupported map key type %s", t.Key())
			return
		}
		if n.Kind != yaml.MappingNode {
			d.add(n, path, "want a mapping, got %s", kindName(n))
			return
		}
		if v.IsNil() {
			v.Set(reflect.MakeMap(t))
		}
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			if k.Kind != yaml.ScalarNode {
				d.add(k, path, "map keys must be strings")
				continue
			}
			if seen[k.Value] {
				d.add(k, path, "duplicate key %q", k.Value)
				continue
			}
			seen[k.Value] = true
			ev := reflect.New(t.Elem()).Elem()
			d.value(val, ev, join(path, k.Value))
			v.SetMapIndex(reflect.ValueOf(k.Value).Convert(t.Key()), ev)
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.add(n, path, "want a list, got %s", kindName(n))
			return
		}
		s := reflect.MakeSlice(t, len(n.Content), len(n.Content))
		for i, e := range n.Content {
			d.value(e, s.Index(i), fmt.Sprintf("%s[%d]", path, i))
		}
		v.Set(s)
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			d.add(n, path, "want a string, got %s", kindName(n))
			return
		}
		v.SetString(n.Value)
	case reflect.Bool:
		var b bool
		if n.Kind != yaml.ScalarNode || n.Decode(&b) != nil {
			d.add(n, path, "want true or false, got %s", d.show(n))
			return
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		var i int64
		if n.Kind != yaml.ScalarNode || n.Decode(&i) != nil || v.OverflowInt(i) {
			d.add(n, path, "want an integer, got %s", d.show(n))
			return
		}
		v.SetInt(i)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		var u uint64
		if n.Kind != yaml.ScalarNode || n.Decode(&u) != nil || v.OverflowUint(u) {
			d.add(n, path, "want a non-negative integer, got %s", d.show(n))
			return
		}
		v.SetUint(u)
	case reflect.Float32, reflect.Float64:
		var f float64
		if n.Kind != yaml.ScalarNode || n.Decode(&f) != nil {
			d.add(n, path, "want a number, got %s", d.show(n))
			return
		}
		v.SetFloat(f)
	case reflect.Interface:
		if err := n.Decode(v.Addr().Interface()); err != nil {
			d.add(n, path, "%s", strings.TrimPrefix(err.Error(), "yaml: "))
		}
	default:
		d.add(n, path, "unsupported field type %s", t)
	}
}

func (d *decoder) show(n *yaml.Node) string {
	if n.Kind == yaml.ScalarNode {
		return quote(n.Value)
	}
	return kindName(n)
}

type fieldInfo struct {
	index    int
	required bool
}

func fieldsOf(t reflect.Type) (map[string]fieldInfo, []string) {
	fields := map[string]fieldInfo{}
	var order []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name := strings.ToLower(f.Name)
		if tag, ok := f.Tag.Lookup("yaml"); ok {
			tn, _, _ := strings.Cut(tag, ",")
			if tn == "-" {
				continue
			}
			if tn != "" {
				name = tn
			}
		}
		fields[name] = fieldInfo{index: i, required: f.Tag.Get("required") == "true"}
		order = append(order, name)
	}
	return fields, order
}

func (d *decoder) structFields(n *yaml.Node, v reflect.Value, path string) {
	fields, order := fieldsOf(v.Type())
	seen := map[string]*yaml.Node{}
	bad := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			d.add(k, path, "keys must be strings")
			continue
		}
		f, ok := fields[k.Value]
		if !ok {
			d.add(k, "", "unknown key %q", join(path, k.Value))
			continue
		}
		if seen[k.Value] != nil {
			d.add(k, "", "duplicate key %q", join(path, k.Value))
			continue
		}
		seen[k.Value] = val
		before := len(d.errs)
		d.value(val, v.Field(f.index), join(path, k.Value))
		if len(d.errs) > before {
			bad[k.Value] = true
		}
	}
	for _, name := range order {
		f := fields[name]
		if !f.required || bad[name] {
			continue
		}
		val, ok := seen[name]
		fv := v.Field(f.index)
		switch {
		case !ok && n.Line == 0:
			d.add(nil, "", "missing required key %q", join(path, name))
		case !ok:
			d.add(n, "", "missing required key %q", join(path, name))
		case fv.IsZero() || ((fv.Kind() == reflect.Slice || fv.Kind() == reflect.Map) && fv.Len() == 0):
			d.add(resolve(val), join(path, name), "must not be empty")
		}
	}
}
