package smtp

import (
	"net/mail"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/proactived/proactived/notifiers"
)

// TLS modes.
const (
	TLSStartTLS = "starttls" // plain connect, then mandatory STARTTLS (port 587)
	TLSImplicit = "tls"      // TLS from the first byte (port 465)
	TLSNone     = "none"     // no encryption (local relays only)
)

// Auth mechanisms.
const (
	AuthPlain = "plain"
	AuthLogin = "login"
	AuthNone  = "none"
)

// Default ports.
const (
	DefaultPort         = 587
	DefaultImplicitPort = 465
)

// Config is the `smtp` channel's configuration.
type Config struct {
	Host string `yaml:"host" required:"true"`
	// Port defaults to 587 (465 with tls: tls).
	Port int `yaml:"port"`
	// TLS is starttls (default), tls or none.
	TLS string `yaml:"tls"`
	// From is the envelope sender and From header: "Shop <noreply@example.com>".
	From     string           `yaml:"from" required:"true"`
	Username string           `yaml:"username"`
	Password notifiers.Secret `yaml:"password"`
	// Auth is plain, login or none; plain when username is set, else none.
	Auth string `yaml:"auth"`
	// InsecureSkipVerify accepts any server certificate (tests, self-signed).
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
	// HELO is the name sent in EHLO/HELO; default: the machine's host name.
	HELO string `yaml:"helo"`
}

// parseConfig decodes, applies defaults and validates; errors carry
// line:col and never the password.
func parseConfig(node *yaml.Node) (*Config, error) {
	var c Config
	if err := notifiers.DecodeStrict(node, &c); err != nil {
		return nil, err
	}
	if strings.Contains(c.Host, "://") || strings.ContainsAny(c.Host, "/ \t") {
		return nil, notifiers.ErrorAt(node, "host", "want a host name or IP address, without scheme or path")
	}
	switch c.TLS {
	case "":
		c.TLS = TLSStartTLS
	case TLSStartTLS, TLSImplicit, TLSNone:
	default:
		return nil, notifiers.ErrorAt(node, "tls", "want starttls, tls or none, got %q", c.TLS)
	}
	switch {
	case c.Port == 0 && c.TLS == TLSImplicit:
		c.Port = DefaultImplicitPort
	case c.Port == 0:
		c.Port = DefaultPort
	case c.Port < 1 || c.Port > 65535:
		return nil, notifiers.ErrorAt(node, "port", "want 1-65535, got %d", c.Port)
	}
	if _, err := mail.ParseAddress(c.From); err != nil {
		return nil, notifiers.ErrorAt(node, "from", "want an address such as \"Shop <noreply@example.com>\": %v", err)
	}
	switch c.Auth {
	case "":
		c.Auth = AuthNone
		if c.Username != "" {
			c.Auth = AuthPlain
		}
	case AuthPlain, AuthLogin, AuthNone:
	default:
		return nil, notifiers.ErrorAt(node, "auth", "want plain, login or none, got %q", c.Auth)
	}
	if c.Auth != AuthNone && c.Username == "" {
		return nil, notifiers.ErrorAt(node, "auth", "auth %s needs a username", c.Auth)
	}
	if c.Password != "" && c.Auth == AuthNone {
		return nil, notifiers.ErrorAt(node, "password", "password is set but auth is none (set username, or auth: plain|login)")
	}
	if strings.ContainsAny(c.HELO, " \t\r\n") {
		return nil, notifiers.ErrorAt(node, "helo", "want a host name")
	}
	return &c, nil
}
