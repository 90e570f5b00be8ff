// Package config reads proactived.yaml: every key optional, `${ENV}`
// expanded in scalar values after parsing (so a secret can never change the
// document's structure or shift error positions), unknown keys reported
// with line:col. Flags override the file in cmd/proactived.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/proactived/proactived/engine/rules"
)

// Config is the whole daemon configuration.
type Config struct {
	NATS     NATS               `yaml:"nats"`
	Data     string             `yaml:"data"`
	Rules    string             `yaml:"rules"`
	HTTP     HTTP               `yaml:"http"`
	Defaults Defaults           `yaml:"defaults"`
	Policy   Policy             `yaml:"policy"`
	Intake   Intake             `yaml:"intake"`
	Support  Support            `yaml:"support"`
	Channels map[string]Channel `yaml:"-"`
	Log      Log                `yaml:"log"`
	// Retention (beside SPEC) is how long decisions, finished
	// notifications, delivery attempts, support contacts, remembered event
	// ids and the journal are kept in SQLite; 0 keeps them forever.
	Retention Duration `yaml:"retention"`

	// File is the path the config was read from ("" = built-in defaults).
	File string `yaml:"-"`
}

// NATS says where events come from.
type NATS struct {
	URL      string `yaml:"url"`    // empty = embedded server on Listen
	Creds    string `yaml:"creds"`  // credentials file for an external server
	Listen   string `yaml:"listen"` // embedded server address
	Stream   string `yaml:"stream"`
	Consumer string `yaml:"consumer"`
	// DeadPrefix is the subject prefix for dead letters.
	DeadPrefix string `yaml:"dead_prefix"`
	// Replicas of the stream when proactived creates it (clusters).
	Replicas int `yaml:"replicas"`
	// MaxAge of retained events when proactived creates the stream; the
	// stream is the log that backtest replays.
	MaxAge Duration `yaml:"max_age"`
}

// HTTP is the API/console listener.
type HTTP struct {
	Addr  string `yaml:"addr"`
	Token Secret `yaml:"token"`
}

// Defaults apply when a customer lacks a preference.
type Defaults struct {
	Channels []string `yaml:"channels"`
	Locale   string   `yaml:"locale"`
	Timezone string   `yaml:"timezone"`
}

// Policy is the delivery policy between a fired rule and a sent message.
type Policy struct {
	FrequencyCap FrequencyCap `yaml:"frequency_cap"`
	QuietHours   QuietHours   `yaml:"quiet_hours"`
	Retry        Retry        `yaml:"retry"`
	// ScheduleGrace: a schedule missed while the daemon was down runs once
	// on start if it fell due within this long.
	ScheduleGrace Duration `yaml:"schedule_grace"`
}

// FrequencyCap is one contact budget per customer across all rules.
type FrequencyCap struct {
	Max int      `yaml:"max"` // 0 = no cap
	Per Duration `yaml:"per"`
}

// QuietHours is a daily window in the customer's timezone.
type QuietHours struct {
	Start string `yaml:"start"` // "21:00"; empty = none
	End   string `yaml:"end"`
}

// Retry governs the outbox dispatcher.
type Retry struct {
	Attempts   int      `yaml:"attempts"`
	Backoff    Duration `yaml:"backoff"`
	MaxBackoff Duration `yaml:"max_backoff"`
	Timeout    Duration `yaml:"timeout"` // per attempt
	// Probe: how often a channel that is down gets one waiting
	// notification tried; its first success makes the others due at once
	// instead of after their backoff (engine/outbox/probe.go). 0 = off.
	Probe Duration `yaml:"probe"`
}

// Intake tunes the event consumer.
type Intake struct {
	MaxEventBytes int `yaml:"max_event_bytes"`
	Batch         int `yaml:"batch"` // events per transaction
	// CatchUpBatch is the events per transaction while the engine is
	// behind: a full batch grows to it when that many are already waiting.
	CatchUpBatch int      `yaml:"catch_up_batch"`
	MaxWait      Duration `yaml:"max_wait"` // how long a batch waits for more events (0: takes what is waiting)
	// Journal keeps a per-entity event journal for explain. It costs a
	// row per event.
	Journal *bool `yaml:"journal"`
	// StateFlush is how long entity state and journal rows changed by
	// stream events may stay in memory only before they are written to
	// SQLite. The stream is the log: after a crash the daemon re-merges the
	// retained events since the last write. Decisions, the outbox and
	// timers are always committed before the ack. 0 writes every batch.
	StateFlush *Duration `yaml:"state_flush"`
	// EntityCache bounds the entities kept decoded in memory (about 2 KB
	// each); the rest are read from SQLite when an event needs them.
	EntityCache int `yaml:"entity_cache"`
	// IDWindow (beside SPEC) is how long producers' event ids
	// (Nats-Msg-Id, CloudEvents id) are remembered to drop a retry that
	// comes back with a new stream sequence; at most `retention`, 0 = as
	// long as it. Default 7 days: every id is a row, and ninety days of
	// them is a table that makes every new id cost more (BENCHMARKS.md,
	// seventeenth round).
	IDWindow *Duration `yaml:"id_window"`
}

// IDWindowOrDefault is intake.id_window with its default (7 days).
func (i Intake) IDWindowOrDefault() time.Duration {
	if i.IDWindow == nil {
		return DefaultIDWindow
	}
	return i.IDWindow.D()
}

// DefaultIDWindow is intake.id_window's default.
const DefaultIDWindow = 7 * 24 * time.Hour

// StateFlushEvery is intake.state_flush with its default (1s).
func (i Intake) StateFlushEvery() time.Duration {
	if i.StateFlush == nil {
		return time.Second
	}
	return i.StateFlush.D()
}

// Support says where support contacts arrive.
type Support struct {
	Subject string `yaml:"subject"`
}

// Log configures logging.
type Log struct {
	Level  string `yaml:"level"`  // debug | info | warn | error
	Format string `yaml:"format"` // text | json | auto
}

// Channel is one configured delivery channel. Spec holds the type-specific
// keys for the channel package's factory.
type Channel struct {
	Name         string
	Type         string
	AddressField string // customer field with this channel's address; "" = none needed
	Timeout      time.Duration
	// MaxInFlight caps this channel's concurrent sends; 0 = as its latency
	// needs, up to 16. A SIGKILL can repeat at most this many of its
	// notifications (each with its idempotency key).
	MaxInFlight int
	Spec        *yaml.Node
	Pos         string // file:line:col of the channel's entry
}

// Secret is a config string that never prints.
type Secret string

func (s Secret) String() string               { return redact(string(s)) }
func (s Secret) GoString() string             { return redact(string(s)) }
func (s Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + redact(string(s)) + `"`), nil }
func (s Secret) MarshalText() ([]byte, error) { return []byte(redact(string(s))), nil }
func (s Secret) Reveal() string               { return string(s) }
func redact(s string) string {
	if s == "" {
		return ""
	}
	return "<secret>"
}

// Duration accepts Go durations plus d and w units.
type Duration time.Duration

// UnmarshalYAML parses "30s", "72h", "60d".
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := rules.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d:%d: %w", n.Line, n.Column, err)
	}
	*d = Duration(v)
	return nil
}

// D returns the value as time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// String writes whole days as days ("90d"), as the config does.
func (d Duration) String() string {
	const day = 24 * time.Hour
	if v := time.Duration(d); v != 0 && v%day == 0 {
		return fmt.Sprintf("%dd", v/day)
	}
	return time.Duration(d).String()
}

// Default returns the built-in configuration (SPEC.md "Running it").
func Default() *Config {
	return &Config{
		NATS: NATS{
			Listen: "127.0.0.1:4222", Stream: "PROACTIVE_EVENTS", Consumer: "proactived",
			DeadPrefix: "proactive.dead", Replicas: 1, MaxAge: Duration(30 * 24 * time.Hour),
		},
		Data:     "./data",
		Rules:    "./rules.d",
		HTTP:     HTTP{Addr: "127.0.0.1:8080"},
		Defaults: Defaults{Channels: []string{"console"}, Locale: "en", Timezone: "UTC"},
		Policy: Policy{
			FrequencyCap:  FrequencyCap{Max: 3, Per: Duration(24 * time.Hour)},
			QuietHours:    QuietHours{Start: "21:00", End: "09:00"},
			Retry:         Retry{Attempts: 8, Backoff: Duration(30 * time.Second), MaxBackoff: Duration(time.Hour), Timeout: Duration(10 * time.Second), Probe: Duration(5 * time.Second)},
			ScheduleGrace: Duration(time.Hour),
		},
		Intake:    Intake{MaxEventBytes: 1 << 20, Batch: 512, CatchUpBatch: 4096},
		Support:   Support{Subject: "support.contacts"},
		Log:       Log{Level: "info", Format: "auto"},
		Retention: Duration(90 * 24 * time.Hour),
		Channels: map[string]Channel{
			"console": {Name: "console", Type: "log"},
		},
	}
}

// Load reads path over the defaults. A missing file is an error only when
// required (the user named it with --config).
func Load(path string, required bool) (*Config, error) {
	cfg := Default()
	data, err := os.ReadFile(path)
	if err != nil {
		if !required && errors.Is(err, fs.ErrNotExist) {
			return cfg, nil
		}
		return nil, fmt.Errorf("read config: %w", err)
	}
	if err := Parse(cfg, path, data, os.LookupEnv); err != nil {
		return nil, err
	}
	cfg.File = path
	return cfg, nil
}

var envRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// Parse decodes data over cfg. lookup resolves ${ENV} references; an unset
// variable is an error naming the variable (never its value).
func Parse(cfg *Config, file string, data []byte, lookup func(string) (string, bool)) error {
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil
		}
		return fmt.Errorf("%s: %w", file, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return fmt.Errorf("%s:%d:%d: a second YAML document is not allowed", file, extra.Line, extra.Column)
	}
	if len(doc.Content) == 0 {
		return nil
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return fmt.Errorf("%s:%d:%d: config must be a mapping", file, root.Line, root.Column)
	}
	var errs []string
	expandEnv(root, lookup, file, &errs)
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "\n"))
	}
	// Channels are decoded by their own packages; pull them out first.
	for i := 0; i+1 < len(root.Content); i += 2 {
		if root.Content[i].Value == "channels" {
			chans, cerrs := parseChannels(file, root.Content[i+1])
			errs = append(errs, cerrs...)
			for k, v := range chans {
				cfg.Channels[k] = v
			}
			root.Content = append(root.Content[:i], root.Content[i+2:]...)
			break
		}
	}
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "\n"))
	}
	if err := checkKeys(file, root, cfgShape); err != nil {
		return err
	}
	if err := root.Decode(cfg); err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	return cfg.Validate()
}

func expandEnv(n *yaml.Node, lookup func(string) (string, bool), file string, errs *[]string) {
	if n.Kind == yaml.ScalarNode && strings.Contains(n.Value, "${") {
		n.Value = envRef.ReplaceAllStringFunc(n.Value, func(ref string) string {
			name := ref[2 : len(ref)-1]
			v, ok := lookup(name)
			if !ok {
				*errs = append(*errs, fmt.Sprintf("%s:%d:%d: environment variable %s is not set", file, n.Line, n.Column, name))
			}
			return v
		})
		n.Tag = "!!str"
		n.Style = yaml.DoubleQuotedStyle
		return
	}
	for _, c := range n.Content {
		expandEnv(c, lookup, file, errs)
	}
}

func parseChannels(file string, n *yaml.Node) (map[string]Channel, []string) {
	out := map[string]Channel{}
	var errs []string
	if n.Kind != yaml.MappingNode {
		return nil, []string{fmt.Sprintf("%s:%d:%d: channels must be a mapping of name to channel", file, n.Line, n.Column)}
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		pos := fmt.Sprintf("%s:%d:%d", file, k.Line, k.Column)
		if v.Kind != yaml.MappingNode {
			errs = append(errs, fmt.Sprintf("%s: channel %q must be a mapping", pos, k.Value))
			continue
		}
		ch := Channel{Name: k.Value, Pos: pos, AddressField: defaultAddressField(k.Value)}
		spec := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Line: v.Line, Column: v.Column}
		for j := 0; j+1 < len(v.Content); j += 2 {
			ck, cv := v.Content[j], v.Content[j+1]
			switch ck.Value {
			case "type":
				ch.Type = cv.Value
			case "address_field":
				ch.AddressField = cv.Value
			case "timeout":
				d, err := rules.ParseDuration(cv.Value)
				if err != nil {
					errs = append(errs, fmt.Sprintf("%s:%d:%d: channel %q: timeout: %v", file, cv.Line, cv.Column, k.Value, err))
				}
				ch.Timeout = d
			case "max_in_flight":
				n, err := strconv.Atoi(cv.Value)
				if err != nil || n < 1 {
					errs = append(errs, fmt.Sprintf("%s:%d:%d: channel %q: max_in_flight: want a whole number of at least 1, got %q", file, cv.Line, cv.Column, k.Value, cv.Value))
				}
				ch.MaxInFlight = n
			default:
				spec.Content = append(spec.Content, ck, cv)
			}
		}
		if ch.Type == "" {
			errs = append(errs, fmt.Sprintf("%s: channel %q: missing type", pos, k.Value))
		}
		if ch.Type == "smtp" && ch.AddressField == "" {
			ch.AddressField = "email"
		}
		ch.Spec = spec
		out[k.Value] = ch
	}
	return out, errs
}

// defaultAddressField maps the conventional channel names to the customer
// field that holds their address (SPEC.md "Customers").
func defaultAddressField(name string) string {
	switch name {
	case "email":
		return "email"
	case "sms", "whatsapp":
		return "phone"
	case "push":
		return "push_token"
	}
	return ""
}

// shape lists the allowed keys of a mapping and the shapes below them.
type shape map[string]shape

var cfgShape = shape{
	"nats":     {"url": nil, "creds": nil, "listen": nil, "stream": nil, "consumer": nil, "dead_prefix": nil, "replicas": nil, "max_age": nil},
	"data":     nil,
	"rules":    nil,
	"http":     {"addr": nil, "token": nil},
	"defaults": {"channels": nil, "locale": nil, "timezone": nil},
	"policy": {
		"frequency_cap":  {"max": nil, "per": nil},
		"quiet_hours":    {"start": nil, "end": nil},
		"retry":          {"attempts": nil, "backoff": nil, "max_backoff": nil, "timeout": nil, "probe": nil},
		"schedule_grace": nil,
	},
	"intake":    {"max_event_bytes": nil, "batch": nil, "catch_up_batch": nil, "max_wait": nil, "journal": nil, "state_flush": nil, "entity_cache": nil, "id_window": nil},
	"support":   {"subject": nil},
	"log":       {"level": nil, "format": nil},
	"retention": nil,
}

func checkKeys(file string, n *yaml.Node, s shape) error {
	var errs []string
	var walk func(n *yaml.Node, s shape, path string)
	walk = func(n *yaml.Node, s shape, path string) {
		if n.Kind != yaml.MappingNode || s == nil {
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			sub, ok := s[k.Value]
			if !ok {
				allowed := make([]string, 0, len(s))
				for a := range s {
					allowed = append(allowed, a)
				}
				sort.Strings(allowed)
				in := ""
				if path != "" {
					in = " in " + path
				}
				errs = append(errs, fmt.Sprintf("%s:%d:%d: unknown key %q%s (allowed: %s)", file, k.Line, k.Column, k.Value, in, strings.Join(allowed, ", ")))
				continue
			}
			next := k.Value
			if path != "" {
				next = path + "." + k.Value
			}
			walk(n.Content[i+1], sub, next)
		}
	}
	walk(n, s, "")
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "\n"))
	}
	return nil
}

// Validate checks values that YAML types cannot.
func (c *Config) Validate() error {
	var errs []string
	if c.Intake.MaxEventBytes <= 0 {
		errs = append(errs, "intake.max_event_bytes must be positive")
	}
	if c.Intake.Batch <= 0 {
		errs = append(errs, "intake.batch must be positive")
	}
	if c.Intake.CatchUpBatch < 0 {
		errs = append(errs, "intake.catch_up_batch must not be negative")
	}
	if c.Intake.EntityCache < 0 {
		errs = append(errs, "intake.entity_cache must not be negative")
	}
	if c.Intake.StateFlushEvery() < 0 {
		errs = append(errs, "intake.state_flush must not be negative")
	}
	if c.Policy.Retry.Attempts <= 0 {
		errs = append(errs, "policy.retry.attempts must be at least 1")
	}
	if c.Policy.Retry.Probe < 0 {
		errs = append(errs, "policy.retry.probe must not be negative (0 turns probes off)")
	}
	if _, err := time.LoadLocation(c.Defaults.Timezone); err != nil {
		errs = append(errs, fmt.Sprintf("defaults.timezone: %v", err))
	}
	qh := c.Policy.QuietHours
	if (qh.Start == "") != (qh.End == "") {
		errs = append(errs, "policy.quiet_hours needs both start and end")
	} else if qh.Start != "" {
		if _, err := ParseClock(qh.Start); err != nil {
			errs = append(errs, fmt.Sprintf("policy.quiet_hours.start: %v", err))
		}
		if _, err := ParseClock(qh.End); err != nil {
			errs = append(errs, fmt.Sprintf("policy.quiet_hours.end: %v", err))
		}
	}
	if w := c.Intake.IDWindowOrDefault(); w < 0 {
		errs = append(errs, "intake.id_window must not be negative (0 remembers event ids as long as retention)")
	}
	switch r := c.Retention.D(); {
	case r < 0:
		errs = append(errs, "retention must not be negative (0 keeps history forever)")
	case r > 0 && r < 24*time.Hour:
		errs = append(errs, "retention must be at least 24h (or 0 to keep history forever)")
	case r > 0 && r < c.Policy.FrequencyCap.Per.D():
		errs = append(errs, fmt.Sprintf("retention (%s) must cover policy.frequency_cap.per (%s): the cap counts the notifications sent in that window",
			c.Retention, c.Policy.FrequencyCap.Per))
	}
	for _, ch := range c.Defaults.Channels {
		if _, ok := c.Channels[ch]; !ok {
			errs = append(errs, fmt.Sprintf("defaults.channels: unknown channel %q", ch))
		}
	}
	if len(errs) > 0 {
		where := c.File
		if where == "" {
			where = "config"
		}
		return fmt.Errorf("%s: %s", where, strings.Join(errs, "; "))
	}
	return nil
}

// ParseClock parses "HH:MM" (or "HH:MM:SS") into seconds after midnight.
func ParseClock(s string) (int, error) {
	t, err := time.Parse("15:04", s)
	if err != nil {
		if t, err = time.Parse("15:04:05", s); err != nil {
			return 0, fmt.Errorf("invalid time of day %q (want HH:MM)", s)
		}
	}
	return t.Hour()*3600 + t.Minute()*60 + t.Second(), nil
}

// ChannelNames lists configured channel names, sorted.
func (c *Config) ChannelNames() []string {
	out := make([]string, 0, len(c.Channels))
	for n := range c.Channels {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}
