package engine

import (
	"encoding/json"
	"time"

	"github.com/proactived/proactived/engine/event"
	"github.com/proactived/proactived/engine/policy"
	"github.com/proactived/proactived/notifiers"
)

// The outbox row's notification document and channel candidates, encoded
// by hand: encoding/json's reflection was most of enqueue's time, a few per
// cent of the whole engine's (BENCHMARKS.md, ninth round). The output
// decodes to what encoding/json's encoding of the same value decodes to
// (docjson_test.go): the same fields and omissions, the same values. Map
// keys of vars come in map order and <, >, & are not escaped to \u003c…,
// which no reader of the document depends on: the dispatcher decodes it
// before it sends anything.

// docJSON is the document's JSON; what appendDoc cannot write (a var
// encoding/json refuses, a year past 9999) is left to encoding/json, as
// before.
func docJSON(n *notifiers.Notification) []byte {
	if b, err := appendDoc(make([]byte, 0, 512), n); err == nil {
		return b
	}
	b, _ := json.Marshal(n)
	return b
}

// appendDoc appends the JSON of a notification document.
func appendDoc(b []byte, n *notifiers.Notification) ([]byte, error) {
	b = appendField(append(b, '{'), "", "id", n.ID)
	b = appendField(b, ",", "idempotency_key", n.IdempotencyKey)
	b = appendField(b, ",", "rule", n.Rule)
	b = appendField(b, ",", "channel", n.Channel)
	b = appendField(b, ",", "priority", n.Priority)
	b = append(b, `,"to":{`...)
	sep := ""
	if n.To.Customer != "" {
		b, sep = appendField(b, sep, "customer", n.To.Customer), ","
	}
	if n.To.Address != "" {
		b = appendField(b, sep, "address", n.To.Address)
	}
	b = append(b, '}')
	if n.Locale != "" {
		b = appendField(b, ",", "locale", n.Locale)
	}
	b = appendField(b, ",", "subject", n.Subject)
	b = appendField(b, ",", "body", n.Body)
	if n.HTML != "" {
		b = appendField(b, ",", "html", n.HTML)
	}
	b = append(b, `,"entity":{`...)
	b = appendField(b, "", "type", n.Entity.Type)
	b = append(appendField(b, ",", "key", n.Entity.Key), '}')
	if len(n.Vars) > 0 {
		b = append(b, `,"vars":`...)
		var err error
		if b, err = event.AppendJSON(b, n.Vars); err != nil {
			return b, err
		}
	}
	b = append(b, `,"created_at":`...)
	if y := n.CreatedAt.Year(); y < 0 || y > 9999 {
		// encoding/json's error for a time it cannot write.
		_, err := json.Marshal(n.CreatedAt)
		return b, err
	}
	b = append(b, '"')
	b = n.CreatedAt.AppendFormat(b, time.RFC3339Nano)
	return append(b, `"}`...), nil
}

// appendCandidates appends the JSON of a notification's channel
// candidates.
func appendCandidates(b []byte, cands []policy.Candidate) []byte {
	if cands == nil {
		return append(b, "null"...)
	}
	b = append(b, '[')
	for i, c := range cands {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendField(append(b, '{'), "", "channel", c.Channel)
		if c.Address != "" {
			b = appendField(b, ",", "address", c.Address)
		}
		b = append(b, '}')
	}
	return append(b, ']')
}

// appendField appends sep, then "key":value with value a JSON string.
func appendField(b []byte, sep, key, value string) []byte {
	b = append(b, sep...)
	b = append(b, '"')
	b = append(b, key...)
	b = append(b, `":`...)
	return event.AppendString(b, value)
}
