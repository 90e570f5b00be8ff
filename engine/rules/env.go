package rules

import (
	"time"
)

// Funcs are the helpers an expression may call besides expr's own builtins.
// The engine supplies real ones bound to the current evaluation; `check`
// compiles against stand-ins of the same types so names and arity are
// type-checked.
type Funcs struct {
	Now             func() time.Time
	Sent            func(rule, key string) bool
	CountSent       func(rule, key string) int
	ContactedWithin func(d time.Duration) bool
}

// Reserved names of the expression environment besides entity names.
const (
	EnvEvent    = "event"
	EnvMsg      = "msg"
	EnvCustomer = "customer"
	EnvVars     = "vars"
	EnvRule     = "rule"
	EnvPromise  = "promise"
)

// NewEnv builds the expression environment: event, msg, customer, one map
// per entity type (by its name), and the helper functions. Values are
// replaced per evaluation by the engine; the map itself is reused so no
// evaluation allocates a new environment.
func NewEnv(entityNames []string, f Funcs) map[string]any {
	env := map[string]any{
		EnvEvent:    map[string]any(nil),
		EnvMsg:      map[string]any{"subject": "", "id": "", "time": time.Time{}},
		EnvCustomer: map[string]any(nil),
	}
	for _, n := range entityNames {
		env[n] = map[string]any(nil)
	}
	if f.Now == nil {
		f.Now = time.Now
	}
	if f.Sent == nil {
		f.Sent = func(string, string) bool { return false }
	}
	if f.CountSent == nil {
		f.CountSent = func(string, string) int { return 0 }
	}
	if f.ContactedWithin == nil {
		f.ContactedWithin = func(time.Duration) bool { return false }
	}
	env["now"] = f.Now
	env["sent"] = f.Sent
	env["count_sent"] = f.CountSent
	env["contacted_within"] = f.ContactedWithin
	return env
}
