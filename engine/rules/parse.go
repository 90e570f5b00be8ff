package rules

import (
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/expr-lang/expr/builtin"
	"github.com/robfig/cron/v3"
	"gopkg.in/yaml.v3"
)

// top decodes one document: entities, rules and templates.
func (f *fileLoader) top(doc *yaml.Node) {
	root := doc
	if doc.Kind == yaml.DocumentNode {
		if len(doc.Content) == 0 {
			return
		}
		root = resolve(doc.Content[0])
	}
	if isNull(root) {
		return
	}
	c := ctx{f: f}
	fs, ok := c.fields(root, "entities", "rules", "templates")
	if !ok {
		return
	}
	if e, ok := fs["entities"]; ok && !isNull(e.v) {
		es, _ := c.sub("entities").entries(e.v, nil)
		for _, e := range es {
			f.entity(e.k, e.v)
		}
	}
	if e, ok := fs["rules"]; ok && !isNull(e.v) {
		items, _ := c.sub("rules").list(e.v)
		for i, item := range items {
			f.rule(i, item)
		}
	}
	if e, ok := fs["templates"]; ok && !isNull(e.v) {
		es, _ := c.sub("templates").entries(e.v, nil)
		for _, e := range es {
			f.template(e.k, e.v)
		}
	}
}

// reservedName reports whether an entity may not be called name: it would
// hide a name of the expression environment, the template data or expr.
func reservedName(name string) bool {
	switch name {
	case EnvEvent, EnvMsg, EnvVars, EnvRule, EnvPromise, "now", "sent", "count_sent", "contacted_within",
		"true", "false", "nil", "in", "not", "and", "or", "matches", "contains", "startsWith", "endsWith", "let", "if", "else":
		return true
	}
	if strings.HasPrefix(name, "__") { // the loader's own helpers (exprguard.go)
		return true
	}
	_, ok := builtin.Index[name]
	return ok
}

func (f *fileLoader) entity(k, v *yaml.Node) {
	l := f.l
	name := k.Value
	c := ctx{f: f, thing: fmt.Sprintf("entity %q", name)}
	switch {
	case !isIdent(name) || strings.ToLower(name) != name:
		c.errf(k, "invalid name: use a-z, 0-9 and _, not starting with a digit (expressions use it as a name)")
	case reservedName(name):
		c.errf(k, "invalid name: %q is reserved", name)
	}
	if first, dup := l.entityAt[name]; dup {
		c.errf(k, "duplicate entity name, first defined at %s", first)
		return
	}
	l.entityAt[name] = f.pos(k)
	e := &Entity{Name: name, Pos: f.pos(k)}
	l.set.Entities[name] = e
	fs, ok := c.fields(v, "key", "subjects", "ttl")
	if !ok {
		return
	}
	if kv, ok := fs["key"]; ok {
		kc := c.sub("key")
		if src, ok := kc.str(kv.v); ok {
			e.KeySrc = src
			l.later = append(l.later, func() { e.Key = l.compile(kc, kv.v, l.keyEnv, false) })
		}
	} else {
		c.errf(v, "missing key")
	}
	if kv, ok := fs["subjects"]; ok {
		sc := c.sub("subjects")
		if items, ok := sc.list(kv.v); ok {
			if len(items) == 0 {
				sc.errf(kv.v, "empty list")
			}
			for _, it := range items {
				if s, ok := sc.subject(it); ok {
					e.Subjects = append(e.Subjects, s)
				}
			}
		}
	} else {
		c.errf(v, "missing subjects")
	}
	if kv, ok := fs["ttl"]; ok {
		e.TTL, _ = c.sub("ttl").duration(kv.v, false)
	}
}

func ruleKeys() []string {
	return []string{
		"name", "description", "on", "entity", "for_each", "if", "for",
		"expect", "within", "deadline", "rearm", "schedule", "timezone", "where",
		"notify", "dedup", "holdout", "mode", "inhibited_by", "inhibit_window",
		"frequency_cap", "promise",
	}
}

func (f *fileLoader) rule(i int, n *yaml.Node) {
	l := f.l
	c := ctx{f: f, thing: fmt.Sprintf("rule #%d", i+1)}
	if n.Kind != yaml.MappingNode {
		c.errf(n, "expected a map, got %s", kindName(n))
		return
	}
	r := &Rule{Pos: f.pos(n), Mode: "live", Rearm: RearmKeep, Notify: Notify{Priority: PriorityNormal}}
	l.set.Rules = append(l.set.Rules, r)

	// The name first, so that every other message can name the rule.
	var nameNode *yaml.Node
	for j := 0; j+1 < len(n.Content); j += 2 {
		if k := resolve(n.Content[j]); k.Kind == yaml.ScalarNode && k.Value == "name" {
			nameNode = resolve(n.Content[j+1])
			break
		}
	}
	if nameNode == nil {
		c.errf(n, "missing name")
	} else if name, ok := c.sub("name").str(nameNode); ok {
		r.Name = name
		c.thing = fmt.Sprintf("rule %q", name)
		if !isName(name) {
			c.errf(nameNode, "invalid name: use a-z, 0-9, '_', '.' and '-', starting with a letter or digit")
		}
		if first, dup := l.ruleAt[name]; dup {
			c.errf(nameNode, "duplicate rule name, first defined at %s", first)
		} else {
			l.ruleAt[name] = f.pos(nameNode)
			l.set.ByName[name] = r
		}
	}

	fs, _ := c.fields(n, ruleKeys()...)
	has := func(k string) bool { _, ok := fs[k]; return ok }
	key := func(k string) *yaml.Node { return fs[k].k }
	val := func(k string) *yaml.Node { return fs[k].v }

	if has("description") && !isNull(val("description")) {
		r.Description, _ = c.sub("description").str(val("description"))
	}
	if has("on") {
		r.On, _ = c.sub("on").subject(val("on"))
	}
	for _, k := range []string{"entity", "for_each"} {
		if !has(k) {
			continue
		}
		kc, node := c.sub(k), val(k)
		name, ok := kc.str(node)
		if !ok {
			continue
		}
		if k == "entity" {
			r.Entity = name
		} else {
			r.ForEach = name
		}
		l.later = append(l.later, func() {
			if _, ok := l.set.Entities[name]; !ok {
				c.errf(node, "%s", unknown("entity", name, keysOf(l.set.Entities)))
			}
		})
	}
	if has("if") {
		ic, node := c.sub("if"), val("if")
		if src, ok := ic.str(node); ok {
			r.IfSrc = src
			l.later = append(l.later, func() {
				r.If = l.compile(ic, node, l.env, true)
				r.IfReadsCustomer = readsCustomer(r.If)
			})
		}
	}
	if has("for") {
		r.For, _ = c.sub("for").duration(val("for"), false)
	}
	if has("expect") {
		r.Expect, _ = c.sub("expect").subject(val("expect"))
	}
	if has("within") {
		r.Within, _ = c.sub("within").duration(val("within"), true)
	}
	if has("deadline") {
		dc, node := c.sub("deadline"), val("deadline")
		if _, ok := dc.str(node); ok {
			l.later = append(l.later, func() {
				r.Deadline = l.compile(dc, node, l.env, false)
				if r.Deadline == nil {
					return
				}
				// Where the type is known, it must be a time (or a string
				// holding one).
				if t := r.Deadline.Node().Type(); t != nil && t.Kind() != reflect.Interface && t != reflect.TypeOf(time.Time{}) && t.Kind() != reflect.String {
					dc.errf(node, "expected a time, got %s", t)
					r.Deadline = nil
				}
			})
		}
	}
	if has("rearm") {
		if s, ok := c.sub("rearm").str(val("rearm")); ok {
			switch Rearm(s) {
			case RearmKeep, RearmReset:
				r.Rearm = Rearm(s)
			default:
				c.sub("rearm").errf(val("rearm"), "unknown value %q (want keep or reset)", s)
			}
		}
	}
	f.schedule(c, r, fs)
	if has("where") {
		wc := c.sub("where")
		es, _ := wc.entries(val("where"), nil)
		for _, e := range es {
			if e.k.Value == "" {
				wc.errf(e.k, "empty field name")
				continue
			}
			fc := wc.sub(e.k.Value)
			if src, ok := fc.str(e.v); ok {
				r.Where = append(r.Where, WhereHint{Field: e.k.Value, Src: src})
				idx, node := len(r.Where)-1, e.v
				l.later = append(l.later, func() { r.Where[idx].Value = l.compile(fc, node, l.whereEnv, false) })
			}
		}
	}
	if has("notify") {
		f.notify(c.sub("notify"), r, val("notify"))
	} else {
		c.errf(n, "missing notify")
	}
	if has("dedup") {
		dc := c.sub("dedup")
		if dfs, ok := dc.fields(val("dedup"), "key", "window"); ok {
			if e, ok := dfs["key"]; ok {
				kc := dc.sub("key")
				if src, ok := kc.str(e.v); ok {
					r.Dedup.KeySrc = src
					l.later = append(l.later, func() { r.Dedup.Key = l.compile(kc, e.v, l.env, false) })
				}
			}
			if e, ok := dfs["window"]; ok {
				r.Dedup.Window, _ = dc.sub("window").duration(e.v, false)
			}
		}
	}
	if has("holdout") {
		hc, node := c.sub("holdout"), val("holdout")
		if s, ok := hc.str(node); ok {
			num := strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(s), "%"))
			x, err := strconv.ParseFloat(num, 64)
			if err != nil || math.IsNaN(x) || x < 0 || x > 100 {
				hc.errf(node, "invalid percentage %q (want 0 to 100, e.g. 5%%)", s)
			} else {
				r.Holdout = x / 100
			}
		}
	}
	if has("mode") {
		if s, ok := c.sub("mode").str(val("mode")); ok {
			if s != "live" && s != "shadow" {
				c.sub("mode").errf(val("mode"), "unknown mode %q (want live or shadow)", s)
			} else {
				r.Mode = s
			}
		}
	}
	if has("inhibited_by") {
		ic := c.sub("inhibited_by")
		items, _ := ic.list(val("inhibited_by"))
		for _, it := range items {
			name, ok := ic.str(it)
			if !ok {
				continue
			}
			r.InhibitedBy = append(r.InhibitedBy, name)
			l.later = append(l.later, func() {
				if _, ok := l.set.ByName[name]; !ok {
					ic.errf(it, "%s", unknown("rule", name, keysOf(l.set.ByName)))
				}
			})
		}
	}
	if has("inhibit_window") {
		r.InhibitFor, _ = c.sub("inhibit_window").duration(val("inhibit_window"), false)
	}
	if has("frequency_cap") {
		fc := c.sub("frequency_cap")
		if cfs, ok := fc.fields(val("frequency_cap"), "max", "per"); ok {
			capv := &Cap{}
			ok := true
			if e, found := cfs["max"]; !found {
				fc.errf(val("frequency_cap"), "missing max")
				ok = false
			} else if s, sok := fc.sub("max").str(e.v); sok {
				m, err := strconv.Atoi(s)
				if err != nil || m < 1 {
					fc.sub("max").errf(e.v, "want a whole number of at least 1, got %q", s)
					ok = false
				}
				capv.Max = m
			} else {
				ok = false
			}
			if e, found := cfs["per"]; !found {
				fc.errf(val("frequency_cap"), "missing per")
				ok = false
			} else if d, dok := fc.sub("per").duration(e.v, true); dok {
				capv.Per = d
			} else {
				ok = false
			}
			if ok {
				r.Cap = capv
			}
		}
	}
	if has("promise") {
		pc := c.sub("promise")
		if pfs, ok := pc.fields(val("promise"), "next_update_within", "template"); ok {
			p := &Promise{}
			r.Promise = p
			if e, found := pfs["next_update_within"]; found {
				p.NextUpdateWithin, _ = pc.sub("next_update_within").duration(e.v, true)
			} else {
				pc.errf(val("promise"), "missing next_update_within")
			}
			if e, found := pfs["template"]; found {
				if name, ok := pc.sub("template").str(e.v); ok {
					p.Template = name
					f.templateRef(c, e.v, name)
				}
			} else {
				pc.errf(val("promise"), "missing template")
			}
		}
	}

	// The kind, and the keys each kind allows.
	on, ent, fe, sch, exp := has("on"), has("entity"), has("for_each"), has("schedule"), has("expect")
	switch {
	case sch:
		r.Kind = KindSchedule
		if on {
			c.errf(key("schedule"), "schedule and on are mutually exclusive")
		}
		if ent {
			c.errf(key("entity"), "entity is not allowed with schedule (use for_each)")
		} else if !fe {
			c.errf(key("schedule"), "schedule needs for_each")
		}
		if exp {
			c.errf(key("expect"), "expect needs on and entity, not schedule")
		}
	case on:
		switch {
		case ent && fe:
			c.errf(key("for_each"), "entity and for_each are mutually exclusive")
		case fe:
			r.Kind = KindFanout
			if exp {
				c.errf(key("expect"), "expect needs entity, not for_each")
			}
		case ent && exp:
			r.Kind = KindAbsence
		case ent:
			r.Kind = KindEvent
		default:
			c.errf(key("on"), "on needs entity or for_each")
		}
	default:
		c.errf(n, "missing on or schedule")
	}
	if has("for") && r.Kind != KindEvent {
		c.errf(key("for"), "for is only allowed on event rules (on + entity)")
	}
	if has("where") && r.Kind != KindFanout {
		c.errf(key("where"), "where is only allowed on fan-out rules (on + for_each)")
	}
	if has("timezone") && !sch {
		c.errf(key("timezone"), "timezone needs schedule")
	}
	for _, k := range []string{"within", "deadline", "rearm"} {
		if has(k) && !exp {
			c.errf(key(k), "%s needs expect", k)
		}
	}
	if r.Kind == KindAbsence && exp {
		switch {
		case !has("within") && !has("deadline"):
			c.errf(key("expect"), "expect needs within or deadline")
		case has("within") && has("deadline"):
			c.errf(key("deadline"), "within and deadline are mutually exclusive")
		}
	}
	if has("inhibit_window") && !has("inhibited_by") {
		c.errf(key("inhibit_window"), "inhibit_window needs inhibited_by")
	}
	if r.Holdout > 0 && r.Notify.Priority == PriorityCritical {
		c.errf(key("holdout"), "critical rules may not hold out")
	}
}

// schedule decodes schedule and timezone.
func (f *fileLoader) schedule(c ctx, r *Rule, fs map[string]kv) {
	tz := time.UTC
	if e, ok := fs["timezone"]; ok {
		tc := c.sub("timezone")
		if s, ok := tc.str(e.v); ok {
			loc, err := time.LoadLocation(s)
			if err != nil || s == "" || s == "Local" {
				tc.errf(e.v, "unknown time zone %q", s)
			} else {
				tz = loc
			}
		}
	}
	e, ok := fs["schedule"]
	if !ok {
		return
	}
	sc := c.sub("schedule")
	spec, ok := sc.str(e.v)
	if !ok {
		return
	}
	if strings.HasPrefix(spec, "CRON_TZ=") || strings.HasPrefix(spec, "TZ=") {
		sc.errf(e.v, "set the time zone with timezone, not in the spec")
		return
	}
	parser := cron.NewParser(cron.SecondOptional | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)
	if _, err := parser.Parse(spec); err != nil {
		sc.errf(e.v, "invalid cron spec %q: %v", spec, err)
		return
	}
	// Parse again with the zone, so that Next is right whatever the
	// location of the time it is given.
	sched, err := parser.Parse("CRON_TZ=" + tz.String() + " " + spec)
	if err != nil {
		sc.errf(e.v, "invalid cron spec %q: %v", spec, err)
		return
	}
	if sched.Next(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)).IsZero() {
		sc.errf(e.v, "cron spec %q never fires", spec)
		return
	}
	r.Schedule, r.ScheduleSpec, r.Timezone = spec, sched, tz
}

func (f *fileLoader) notify(c ctx, r *Rule, n *yaml.Node) {
	l := f.l
	fs, ok := c.fields(n, "to", "channel", "template", "priority", "vars")
	if !ok {
		return
	}
	if e, ok := fs["to"]; ok {
		tc := c.sub("to")
		if src, ok := tc.str(e.v); ok {
			r.Notify.ToSrc = src
			l.later = append(l.later, func() {
				r.Notify.To = l.compile(tc, e.v, l.env, false)
				if _, ok := l.set.Entities[EnvCustomer]; !ok {
					tc.errf(e.v, "needs a %q entity (it holds the contact data), and none is declared", EnvCustomer)
				}
			})
		}
	}
	if e, ok := fs["channel"]; ok {
		if name, ok := c.sub("channel").str(e.v); ok {
			r.Notify.Channel = name
			l.later = append(l.later, func() {
				if !l.knownChannel(name) {
					known := append([]string{"console"}, l.opts.Channels...)
					c.thingOnly().errf(e.v, "%s", unknown("channel", name, known))
				}
			})
		}
	}
	if _, ok := fs["to"]; !ok {
		if _, ok := fs["channel"]; !ok {
			c.errf(n, "needs to (a customer) or channel (an internal hand-off)")
		}
	}
	if e, ok := fs["template"]; ok {
		if name, ok := c.sub("template").str(e.v); ok {
			r.Notify.Template = name
			f.templateRef(c, e.v, name)
		}
	} else {
		c.errf(n, "missing template")
	}
	if e, ok := fs["priority"]; ok {
		pc := c.sub("priority")
		if s, ok := pc.str(e.v); ok {
			p, ok := ParsePriority(s)
			if !ok {
				pc.errf(e.v, "unknown priority %q (want low, normal, high or critical)", s)
			}
			r.Notify.Priority = p
		}
	}
	if e, ok := fs["vars"]; ok {
		vc := c.sub("vars")
		es, _ := vc.entries(e.v, nil)
		for _, v := range es {
			name := v.k.Value
			if !isIdent(name) {
				vc.errf(v.k, "invalid name %q: use letters, digits and _", name)
				continue
			}
			xc := vc.sub(name)
			if src, ok := xc.str(v.v); ok {
				r.Notify.Vars = append(r.Notify.Vars, Var{Name: name, Src: src})
				idx, node := len(r.Notify.Vars)-1, v.v
				l.later = append(l.later, func() { r.Notify.Vars[idx].Expr = l.compile(xc, node, l.env, false) })
			}
		}
	}
}

// templateRef checks, once all files are read, that a template exists.
func (f *fileLoader) templateRef(c ctx, n *yaml.Node, name string) {
	l := f.l
	l.later = append(l.later, func() {
		if _, ok := l.set.Templates[name]; !ok {
			c.thingOnly().errf(n, "%s", unknown("template", name, keysOf(l.set.Templates)))
		}
	})
}

// thingOnly drops the key path: references read `rule "x": unknown
// template "late"`.
func (c ctx) thingOnly() ctx { c.path = ""; return c }

func (f *fileLoader) template(k, v *yaml.Node) {
	l := f.l
	name := k.Value
	c := ctx{f: f, thing: fmt.Sprintf("template %q", name)}
	if !isName(name) {
		c.errf(k, "invalid name: use a-z, 0-9, '_', '.' and '-', starting with a letter or digit")
	}
	if first, dup := l.templateAt[name]; dup {
		c.errf(k, "duplicate template name, first defined at %s", first)
		return
	}
	l.templateAt[name] = f.pos(k)
	t := &Template{Name: name, Locales: map[string]*LocaleTemplate{}, Pos: f.pos(k)}
	l.set.Templates[name] = t
	locales, ok := c.entries(v, nil)
	if !ok {
		return
	}
	if len(locales) == 0 {
		c.errf(resolve(v), "no locales")
	}
	for _, e := range locales {
		loc := e.k.Value
		if !isLocale(loc) {
			c.errf(e.k, "invalid locale %q (want e.g. en, ru-RU)", loc)
			continue
		}
		if i := t.findLocale(loc); i >= 0 {
			c.errf(e.k, "locale %q repeats %q", loc, t.Order[i])
			continue
		}
		lc := c.sub(loc)
		parts, ok := lc.fields(e.v, "subject", "body", "html")
		if !ok {
			continue
		}
		lt := &LocaleTemplate{}
		for _, part := range []string{"subject", "body", "html"} {
			p, ok := parts[part]
			if !ok {
				continue
			}
			pc := lc.sub(part)
			_, ok = pc.str(p.v)
			if !ok {
				continue
			}
			tm := l.parseTemplatePart(pc, p.v, name+"/"+loc+"/"+part)
			switch part {
			case "subject":
				lt.Subject = tm
			case "body":
				lt.Body = tm
			case "html":
				lt.HTML = tm
			}
		}
		if _, ok := parts["body"]; !ok {
			lc.errf(e.v, "missing body")
		}
		t.Locales[loc] = lt
		t.Order = append(t.Order, loc)
	}
}

// findLocale returns the index in Order of a locale equal to loc (ignoring
// case and '-' vs '_'), or -1.
func (t *Template) findLocale(loc string) int {
	for i, k := range t.Order {
		if sameLocale(k, loc) {
			return i
		}
	}
	return -1
}
