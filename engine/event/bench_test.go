package event

import (
	"testing"
	"time"

	"github.com/proactived/proactived/engine/internal/cpumeter"
)

// benchBody is a realistic ~300-byte order event, like proactived bench
// publishes.
const benchBody = `{"order_id":"o-0001234","customer_id":"c-000311","status":"in_transit","reason":"carrier_delay_17","region":"eu-west","eta":"2026-12-03T18:00:00Z","attempts":2,"carrier":"dhl-express","tracking":"JJD000001234","warehouse":"wh-berlin-3","sku":"SKU-4521","total":12900,"currency":"EUR","emitted_at":"2026-11-22T11:48:31.123456789Z"}`

// BenchmarkDecode is the per-event decode cost: JSON into the map that
// expressions read, with numbers normalized.
// With an interner (as the engine decodes) keys and short values are
// shared among events.
func BenchmarkDecode(b *testing.B) {
	for _, c := range []struct {
		name string
		in   *Interner
	}{{"plain", nil}, {"interned", NewInterner()}} {
		b.Run(c.name, func(b *testing.B) {
			raw := Raw{Subject: "shipments.eta_updated", Body: []byte(benchBody), Seq: 1, Time: time.Now()}
			b.SetBytes(int64(len(benchBody)))
			b.ReportAllocs()
			defer cpumeter.Start().Report(b)
			for b.Loop() {
				ev, rej := DecodeWith(raw, 1<<20, c.in)
				if rej != nil || len(ev.Data) != 14 {
					b.Fatal(rej, ev)
				}
			}
		})
	}
}
