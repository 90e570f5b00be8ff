package rules

import (
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/vm"
)

func testIndex() *Index {
	rules := []*Rule{
		{Name: "exact", Kind: KindEvent, On: "orders.created"},
		{Name: "star", Kind: KindEvent, On: "orders.*"},
		{Name: "tail", Kind: KindFanout, On: "orders.>"},
		{Name: "mid", Kind: KindEvent, On: "orders.*.paid"},
		{Name: "absent", Kind: KindAbsence, On: "orders.created", Expect: "shipments.*.dispatched"},
		{Name: "absent-any", Kind: KindAbsence, On: "orders.paid", Expect: "shipments.>"},
		{Name: "sched", Kind: KindSchedule},
		{Name: "other", Kind: KindEvent, On: "customers.updated"},
	}
	entities := map[string]*Entity{
		"order":    {Name: "order", Subjects: []string{"orders.>", "orders.*", "shipments.>"}},
		"customer": {Name: "customer", Subjects: []string{"customers.>", "orders.created"}},
	}
	return NewIndex(rules, entities)
}

func entityNames(es []*Entity) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.Name)
	}
	return out
}

func TestIndexLookups(t *testing.T) {
	ix := testIndex()
	for _, c := range []struct {
		subject                    string
		rules, expecting, entities []string
	}{
		{"orders.created", []string{"exact", "star", "tail", "absent"}, nil, []string{"customer", "order"}},
		{"orders.paid", []string{"star", "tail", "absent-any"}, nil, []string{"order"}},
		{"orders.eu.paid", []string{"tail", "mid"}, nil, []string{"order"}},
		{"orders.eu.shipped", []string{"tail"}, nil, []string{"order"}},
		{"orders", nil, nil, nil},
		{"orders.a.b.c.d", []string{"tail"}, nil, []string{"order"}},
		{"shipments.dhl.dispatched", nil, []string{"absent", "absent-any"}, []string{"order"}},
		{"shipments.dispatched", nil, []string{"absent-any"}, []string{"order"}},
		{"customers.updated", []string{"other"}, nil, []string{"customer"}},
		{"customers", nil, nil, nil},
		{"nothing.here", nil, nil, nil},
		{"", nil, nil, nil},
	} {
		for pass := 0; pass < 2; pass++ { // computed, then cached
			if got := names(ix.Rules(c.subject)); !slices.Equal(got, c.rules) {
				t.Errorf("pass %d: Rules(%q) = %v, want %v", pass, c.subject, got, c.rules)
			}
			if got := names(ix.Expecting(c.subject)); !slices.Equal(got, c.expecting) {
				t.Errorf("pass %d: Expecting(%q) = %v, want %v", pass, c.subject, got, c.expecting)
			}
			if got := entityNames(ix.Entities(c.subject)); !slices.Equal(got, c.entities) {
				t.Errorf("pass %d: Entities(%q) = %v, want %v", pass, c.subject, got, c.entities)
			}
		}
	}
	var nilIndex *Index
	if nilIndex.Rules("orders.created") != nil || nilIndex.Entities("x") != nil || nilIndex.Expecting("x") != nil {
		t.Error("nil index found something")
	}
}

// The index must agree with a plain scan using SubjectMatches.
func TestIndexAgreesWithScan(t *testing.T) {
	patterns := []string{"a", "a.b", "a.*", "a.>", "a.b.c", "a.*.c", "a.b.*", "a.*.>", "a.b.>", "b.>", "*.b", "*.>", ">", "*", "*.*.c"}
	var rules []*Rule
	for i, p := range patterns {
		rules = append(rules, &Rule{Name: fmt.Sprint(i), Kind: KindEvent, On: p})
	}
	ix := NewIndex(rules, nil)
	for _, s := range []string{"a", "b", "a.b", "a.c", "b.b", "a.b.c", "a.x.c", "a.b.x", "b.x.c", "a.b.c.d", "x.y.z.w", "c"} {
		var want []string
		for _, r := range rules {
			if SubjectMatches(r.On, s) {
				want = append(want, r.Name)
			}
		}
		if got := names(ix.Rules(s)); !slices.Equal(got, want) {
			t.Errorf("Rules(%q) = %v, scan says %v", s, got, want)
		}
	}
}

func TestIndexCacheIsBounded(t *testing.T) {
	ix := testIndex()
	for i := 0; i < 3*DefaultIndexCache; i++ {
		s := fmt.Sprintf("orders.o-%d.paid", i)
		if got := names(ix.Rules(s)); !slices.Equal(got, []string{"tail", "mid"}) {
			t.Fatalf("Rules(%q) = %v", s, got)
		}
	}
	if n := ix.cacheLen(); n > DefaultIndexCache {
		t.Errorf("cache holds %d subjects, want at most %d", n, DefaultIndexCache)
	}
	// The latest subjects are still cached: a look-up allocates nothing.
	// (The subject is built outside the measurement: under -race, fmt's
	// sync.Pool drops buffers at random, so Sprintf's own allocations
	// vary.)
	recent := fmt.Sprintf("orders.o-%d.paid", 3*DefaultIndexCache-1)
	if n := testing.AllocsPerRun(100, func() { ix.Rules(recent) }); n > 0 {
		t.Errorf("recent subject: %v allocs", n)
	}
}

func TestIndexHitDoesNotAllocate(t *testing.T) {
	ix := testIndex()
	ix.Rules("orders.eu.paid")
	if n := testing.AllocsPerRun(1000, func() {
		ix.Rules("orders.eu.paid")
		ix.Expecting("orders.eu.paid")
		ix.Entities("orders.eu.paid")
	}); n != 0 {
		t.Errorf("cache hit allocates %v times", n)
	}
}

func TestIndexCopiesSubject(t *testing.T) {
	ix := testIndex()
	buf := []byte("orders.created")
	s := string(buf) // a caller reusing a buffer would hand out aliasing strings; we clone on insert
	ix.Rules(s)
	if got := names(ix.Rules("orders.created")); !slices.Equal(got, []string{"exact", "star", "tail", "absent"}) {
		t.Errorf("Rules = %v", got)
	}
}

func TestIndexConcurrent(t *testing.T) {
	ix := testIndex()
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 2000; i++ {
				s := fmt.Sprintf("orders.o-%d.paid", (i*7+g)%3000)
				if len(ix.Rules(s)) != 2 || len(ix.Entities(s)) != 1 || len(ix.Expecting("shipments.x.dispatched")) != 2 {
					t.Error("wrong answer under concurrency")
					return
				}
			}
		}()
	}
	wg.Wait()
}

// BenchmarkIndexRules: 1000 rules over 50 subjects, looked up by concrete
// subjects (a cache hit after the first round).
func BenchmarkIndexRules(b *testing.B) {
	var rules []*Rule
	for i := 0; i < 1000; i++ {
		subject := fmt.Sprintf("svc%d.event%d", i%50, i%7)
		if i%10 == 0 {
			subject = fmt.Sprintf("svc%d.>", i%50)
		}
		rules = append(rules, &Rule{Name: fmt.Sprint("r", i), Kind: KindEvent, On: subject})
	}
	ix := NewIndex(rules, map[string]*Entity{"e": {Name: "e", Subjects: []string{"svc0.>"}}})
	subjects := make([]string, 50)
	for i := range subjects {
		subjects[i] = fmt.Sprintf("svc%d.event%d", i, i%7)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if len(ix.Rules(subjects[i%len(subjects)])) == 0 {
				b.Fatal("no rules")
			}
			i++
		}
	})
}

// BenchmarkIndexRulesUncached is the miss path: every subject is new.
func BenchmarkIndexRulesUncached(b *testing.B) {
	var rules []*Rule
	for i := 0; i < 1000; i++ {
		rules = append(rules, &Rule{Name: fmt.Sprint("r", i), Kind: KindEvent, On: fmt.Sprintf("svc%d.*.event%d", i%50, i%7)})
	}
	ix := NewIndex(rules, nil)
	subjects := make([]string, 4096)
	for i := range subjects {
		subjects[i] = fmt.Sprintf("svc%d.id-%d.event%d", i%50, i, i%7)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		ix.compute(subjects[i%len(subjects)])
	}
}

// BenchmarkEvalIf evaluates a realistic compiled `if` with a reused VM and
// environment, as the engine does per event.
func BenchmarkEvalIf(b *testing.B) {
	env := NewEnv([]string{"order", "customer"}, Funcs{})
	p, err := expr.Compile(`order.status != "delivered" && date(event.eta) > date(order.promised_at) + duration("1h") && count_sent("delivery-delayed", order.order_id) < 2`,
		expr.Env(env), expr.AsBool(), expr.MaxNodes(MaxExprNodes))
	if err != nil {
		b.Fatal(err)
	}
	env[EnvEvent] = map[string]any{"order_id": "o-1", "eta": "2026-11-23T12:00:00Z"}
	env["order"] = map[string]any{"order_id": "o-1", "status": "paid", "promised_at": "2026-11-22T18:00:00Z"}
	var m vm.VM
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		out, err := m.Run(p, env)
		if err != nil || out != true {
			b.Fatal(out, err)
		}
	}
}
