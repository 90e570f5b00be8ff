package rules

import "testing"

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
