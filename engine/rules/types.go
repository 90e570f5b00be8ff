// Package rules holds the compiled form of the rule files in rules.d/:
// entities, rules and templates, the expression environment they share, and
// the subject index that lets an event evaluate only the rules that can match
// it. Loading is all-or-nothing and reports every problem with its position.
package rules

import (
	"fmt"
	"sync"
	"text/template"
	"time"

	"github.com/expr-lang/expr/vm"
	"github.com/robfig/cron/v3"
)

// Pos is a position in a rule file, 1-based.
type Pos struct {
	File string
	Line int
	Col  int
}

func (p Pos) String() string { return fmt.Sprintf("%s:%d:%d", p.File, p.Line, p.Col) }

// Set is one complete, compiled rule set. It is immutable once loaded, so the
// engine can swap sets atomically on reload.
type Set struct {
	Entities  map[string]*Entity
	Rules     []*Rule // in file order (files sorted by path)
	ByName    map[string]*Rule
	Templates map[string]*Template
	Files     []string // every file that was loaded
	Index     *Index

	// DefaultLocale is Options.DefaultLocale ("en" if none was given), the
	// locale templates fall back to.
	DefaultLocale string

	subjects  []string // see Subjects
	schedules []*Rule  // see Schedules
}

// Entity is remembered state, one record per key.
type Entity struct {
	Name     string
	Key      *vm.Program // evaluated with env {event, msg}; must give a non-empty string or number
	KeySrc   string
	Subjects []string
	TTL      time.Duration // 0 = forever
	Pos      Pos
}

// Priority orders notifications for the contact budget.
type Priority int

const (
	PriorityLow Priority = iota
	PriorityNormal
	PriorityHigh
	PriorityCritical
)

func (p Priority) String() string {
	switch p {
	case PriorityLow:
		return "low"
	case PriorityHigh:
		return "high"
	case PriorityCritical:
		return "critical"
	default:
		return "normal"
	}
}

// ParsePriority maps the YAML word to a Priority.
func ParsePriority(s string) (Priority, bool) {
	switch s {
	case "low":
		return PriorityLow, true
	case "", "normal":
		return PriorityNormal, true
	case "high":
		return PriorityHigh, true
	case "critical":
		return PriorityCritical, true
	}
	return PriorityNormal, false
}

// Kind says what triggers a rule.
type Kind int

const (
	KindEvent    Kind = iota // on + entity: evaluate against the event's entity
	KindAbsence              // on + entity + expect + within|deadline: fire when the expected event never came
	KindFanout               // on + for_each: one event against every entity of a type
	KindSchedule             // schedule + for_each: a periodic sweep
)

func (k Kind) String() string {
	return [...]string{"event", "absence", "fanout", "schedule"}[k]
}

// Rearm is what a second `on` event does to an armed absence timer.
type Rearm string

const (
	RearmKeep  Rearm = "keep"  // default: the first deadline stands
	RearmReset Rearm = "reset" // the deadline restarts from the new event
)

// Rule is one compiled rule.
type Rule struct {
	Name        string
	Description string
	Kind        Kind
	On          string      // subject pattern; empty for schedules
	Entity      string      // entity type name (KindEvent, KindAbsence)
	ForEach     string      // entity type name (KindFanout, KindSchedule)
	If          *vm.Program // nil = always true
	// IfReadsCustomer: If names `customer`, `contacted_within` (which
	// reads it) or the whole environment, so the engine resolves the
	// customer before it runs If.
	IfReadsCustomer bool
	IfSrc           string
	For             time.Duration // hold-down; 0 = none

	// Absence.
	Expect   string        // subject pattern that cancels the deadline
	Within   time.Duration // deadline = on-event time + Within
	Deadline *vm.Program   // or an expression giving a time
	Rearm    Rearm

	// Schedule.
	Schedule     string
	ScheduleSpec cron.Schedule
	Timezone     *time.Location

	// Fan-out pre-filter: entity field → expression on the event; only
	// entities whose field equals (or, for a list field, contains) the value
	// are evaluated. See docs/rules.md "Fan-out".
	Where []WhereHint

	Notify      Notify
	Dedup       Dedup
	Holdout     float64 // fraction 0..1 of entity keys held out
	Mode        string  // "live" or "shadow"
	InhibitedBy []string
	InhibitFor  time.Duration // 0 = any time
	Cap         *Cap          // per-rule frequency cap override; nil = policy default
	Promise     *Promise
	Pos         Pos
}

// WhereHint is one equality pre-filter of a fan-out rule.
type WhereHint struct {
	Field string
	Value *vm.Program
	Src   string
}

// Notify says whom to tell and how.
type Notify struct {
	To       *vm.Program // nil for internal notifications (Channel set)
	ToSrc    string
	Channel  string // fixed channel name; empty = customer's preference
	Template string
	Priority Priority
	Vars     []Var
}

// Var is one extra template variable.
type Var struct {
	Name string
	Expr *vm.Program
	Src  string
}

// Dedup says when a fired rule is a repeat.
type Dedup struct {
	Key    *vm.Program // nil = once per entity key
	KeySrc string
	Window time.Duration // 0 = forever
}

// Cap is a frequency cap: at most Max contacts per Per.
type Cap struct {
	Max int
	Per time.Duration
}

// Promise makes a rule tell the customer when they will hear next.
type Promise struct {
	NextUpdateWithin time.Duration
	Template         string
}

// Template is one named template with a body per locale.
type Template struct {
	Name    string
	Locales map[string]*LocaleTemplate
	Order   []string // locales in the order they were defined
	Pos     Pos
}

// LocaleTemplate is one locale's parts. HTML is optional (email).
type LocaleTemplate struct {
	Subject *template.Template
	Body    *template.Template
	HTML    *template.Template

	// counted holds, per part (subject, body, html), copies whose step
	// function counts into their own counter (see Render): cloning per
	// render would cost more than rendering.
	counted [3]sync.Pool
	// plain holds, per part, its plain form (fastrender.go), worked out
	// at the first render; nil when the part is not plain.
	plain [3]struct {
		once sync.Once
		part *plainPart
	}
}

// Rendered is a template's output for one notification.
type Rendered struct {
	Locale  string
	Subject string
	Body    string
	HTML    string
}
