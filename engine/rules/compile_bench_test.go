package rules

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// BenchmarkCompileExpr is the loader's compilation of one condition like
// the bench's: the check without patches, then the compile with them.
func BenchmarkCompileExpr(b *testing.B) {
	env := NewEnv([]string{"order"}, Funcs{})
	src := `event.reason in ["carrier_delay", "weather"] && date(event.eta) > date(order.promised_at) + duration("2h") && customer.tier in ["gold", "platinum"] && order.total >= 5000`
	b.ReportAllocs()
	for b.Loop() {
		if _, err := compileExpr(src, env, true); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRuleSetHeap loads 2,000 rules shaped like `proactived bench`'s
// and reports the heap they keep (after a collection) per rule, and the
// objects: what every garbage collection marks while the daemon runs.
func BenchmarkRuleSetHeap(b *testing.B) {
	const n = 2000
	var y strings.Builder
	y.WriteString("entities:\n  order: { key: event.order_id, subjects: [\"orders.>\", \"shipments.>\"] }\n  customer: { key: event.customer_id, subjects: [\"customers.>\"] }\n")
	y.WriteString("templates: { t: { en: { subject: \"Order {{ .order.order_id }}\", body: \"{{ .event.reason }}\" } } }\nrules:\n")
	for i := range n {
		fmt.Fprintf(&y, "  - name: r%05d\n    on: shipments.s%d\n    entity: order\n    if: 'event.reason in [\"capacity_%d\", \"held_%d\"] && event.region in [\"eu-west\", \"eu-north\", \"us-east\"] && order.total >= %d && date(event.eta) > date(order.promised_at) + duration(\"2h\")'\n    notify: { to: order.customer_id, template: t }\n",
			i, i%48, i, i, 1000+i)
	}
	path := filepath.Join(b.TempDir(), "rules.yaml")
	if err := os.WriteFile(path, []byte(y.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	var heap, objects float64
	for b.Loop() {
		var m0, m1 runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&m0)
		s, err := LoadFiles([]string{path}, Options{})
		if err != nil {
			b.Fatal(err)
		}
		runtime.GC()
		runtime.ReadMemStats(&m1)
		heap += float64(m1.HeapAlloc) - float64(m0.HeapAlloc)
		objects += float64(m1.HeapObjects) - float64(m0.HeapObjects)
		runtime.KeepAlive(s)
	}
	b.ReportMetric(heap/float64(b.N)/n, "heap-B/rule")
	b.ReportMetric(objects/float64(b.N)/n, "objects/rule")
}
