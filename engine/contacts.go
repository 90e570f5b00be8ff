package engine

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/proactived/proactived/engine/event"
	"github.com/proactived/proactived/engine/rules"
	"github.com/proactived/proactived/engine/store"
)

// supportContact records a support contact event:
// {"customer":"c-1","entity":{"type":"order","key":"o-1"},"topic":"order_status","status":"opened","channel":"phone"}.
// The entity may also be given by a field an entity's key reads (order_id).
// `time` (RFC 3339) in the data is when the contact happened — producers
// often forward contacts from a helpdesk after the fact — else the event's
// time; the effectiveness report counts contacts by this time.
func (e *Engine) supportContact(ctx context.Context, ev *event.Event) error {
	d := ev.Data
	customer := event.KeyString(d["customer"])
	if customer == "" {
		customer = event.KeyString(d["customer_id"])
	}
	var etype, ekey string
	if ref, ok := d["entity"].(map[string]any); ok {
		etype, ekey = event.KeyString(ref["type"]), event.KeyString(ref["key"])
	} else {
		set := e.set.Load()
		// Sorted, so a contact that names two entities links to the same
		// one every time (map order is random).
		names := make([]string, 0, len(set.Entities))
		for name := range set.Entities {
			if name != rules.EnvCustomer {
				names = append(names, name)
			}
		}
		sort.Strings(names)
		for _, name := range names {
			if k, err := e.contactKey(set.Entities[name], ev); err == nil && k != "" {
				etype, ekey = name, k
				break
			}
		}
	}
	at := ev.Time
	if ts, ok := d["time"].(string); ok && ts != "" {
		if t, err := time.Parse(time.RFC3339Nano, ts); err == nil {
			at = t
		} else {
			e.log.Warn("support contact: time is not RFC 3339; using the event time", "time", ts, "id", ev.ID)
		}
	}
	status := strings.ToLower(event.KeyString(d["status"]))
	if status == "" {
		status = "opened"
	}
	if status == "open" {
		status = "opened"
	}
	if status == "close" || status == "resolved" {
		status = "closed"
	}
	id := event.KeyString(d["id"])
	if id == "" {
		id = ev.ID
	}
	err := e.cur.write(ctx, tContacts, `INSERT INTO contacts (at, customer, etype, ekey, topic, channel, status, contact_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		store.Millis(at), customer, etype, ekey, event.KeyString(d["topic"]), event.KeyString(d["channel"]), status, id)
	if err == nil {
		e.contactMemo.put(customer, true)
	}
	return err
}

// contactKey evaluates an entity's key expression on a contact event; a
// key expression that panics on this shape of data means "no key".
func (e *Engine) contactKey(ent *rules.Entity, ev *event.Event) (key string, err error) {
	defer func() {
		if r := recover(); r != nil {
			key, err = "", fmt.Errorf("key expression panicked: %v", r)
		}
	}()
	return e.entityKey(ent, ev)
}

// openContact returns the id of an open support contact of the customer
// about this entity, or about nothing in particular; "" if none.
func (e *Engine) openContact(ctx context.Context, customer, etype, ekey string) (string, error) {
	// Most customers never contacted support: one index probe settles
	// that, before the two ordered look-ups below (an ORDER BY … LIMIT 1
	// costs several times a plain probe, even on an empty table).
	has, ok := e.contactMemo.get(customer)
	if !ok {
		if err := e.cur.reader(tContacts).QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM contacts WHERE customer = ?)`, customer).Scan(&has); err != nil {
			e.cur.fail(err)
			return "", err
		}
		e.contactMemo.put(customer, has)
	}
	if !has {
		return "", nil
	}
	refs := [][2]string{{"", ""}}
	if etype != "" {
		refs = append(refs, [2]string{etype, ekey})
	}
	for _, ref := range refs {
		var status, id string
		err := e.cur.reader(tContacts).QueryRowContext(ctx, `SELECT status, contact_id FROM contacts WHERE customer = ? AND etype = ? AND ekey = ? ORDER BY at DESC, id DESC LIMIT 1`,
			customer, ref[0], ref[1]).Scan(&status, &id)
		if errors.Is(err, sql.ErrNoRows) {
			continue
		}
		if err != nil {
			e.cur.fail(err)
			return "", err
		}
		if status == "opened" {
			return id, nil
		}
	}
	return "", nil
}

// newULID makes a 26-character, time-ordered, unique id.
func newULID(t time.Time, seq uint32) string {
	const alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
	var b [16]byte
	ms := uint64(t.UnixMilli())
	b[0], b[1], b[2], b[3], b[4], b[5] = byte(ms>>40), byte(ms>>32), byte(ms>>24), byte(ms>>16), byte(ms>>8), byte(ms)
	_, _ = rand.Read(b[6:12])
	binary.BigEndian.PutUint32(b[12:], seq)
	// 128 bits → 26 base32 digits.
	var out [26]byte
	hi := binary.BigEndian.Uint64(b[:8])
	lo := binary.BigEndian.Uint64(b[8:])
	for i := 25; i >= 0; i-- {
		out[i] = alphabet[lo&31]
		lo = lo>>5 | hi<<59
		hi >>= 5
	}
	return string(out[:])
}
