package webhook

import (
	"net/http"
	"net/url"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/proactived/proactived/notifiers"
)

// Config is the `webhook` channel's configuration.
type Config struct {
	// URL receives a POST of the notification document. http or https.
	URL string `yaml:"url" required:"true"`
	// Secret, when set, signs the body: Proactive-Signature: sha256=<hex>.
	Secret notifiers.Secret `yaml:"secret"`
	// Headers are added to every request. Values are treated as secrets
	// (they usually carry tokens) and never printed.
	Headers map[string]notifiers.Secret `yaml:"headers"`
}

// reservedHeaders are set by the channel itself.
func reservedHeader(name string) bool {
	switch http.CanonicalHeaderKey(name) {
	case "Content-Type", "Content-Length", "Host", "Idempotency-Key", "Proactive-Signature":
		return true
	}
	return false
}

// parseConfig decodes and validates; errors carry line:col.
func parseConfig(node *yaml.Node) (*Config, *url.URL, error) {
	var c Config
	if err := notifiers.DecodeStrict(node, &c); err != nil {
		return nil, nil, err
	}
	u, err := url.Parse(c.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, nil, notifiers.ErrorAt(node, "url", "want an absolute http or https URL")
	}
	if u.User != nil {
		return nil, nil, notifiers.ErrorAt(node, "url", "credentials in the URL are not allowed; use headers (e.g. Authorization) or secret")
	}
	headers := notifiers.Lookup(node, "headers")
	for name, v := range c.Headers {
		if !validHeaderName(name) {
			return nil, nil, notifiers.ErrorAt(headers, name, "invalid header name")
		}
		if reservedHeader(name) {
			return nil, nil, notifiers.ErrorAt(headers, name, "header is set by the webhook channel and cannot be overridden")
		}
		if strings.ContainsAny(v.Reveal(), "\r\n\x00") {
			return nil, nil, notifiers.ErrorAt(headers, name, "header value must not contain line breaks")
		}
	}
	return &c, u, nil
}

// validHeaderName reports whether s is an RFC 9110 token.
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		case strings.ContainsRune("!#$%&'*+-.^_`|~", r):
		default:
			return false
		}
	}
	return true
}
