package rules

import (
	"fmt"
	"slices"
	"testing"
	"time"
)

func TestValidSubject(t *testing.T) {
	for _, c := range []struct {
		in, err string
	}{
		{"orders", ""},
		{"orders.created", ""},
		{"orders.*", ""},
		{"orders.>", ""},
		{"orders.*.paid", ""},
		{"*", ""},
		{">", ""},
		{"*.>", ""},
		{"orders.eu-west.o_1", ""},
		{"", `empty subject`},
		{"orders.", `invalid subject "orders.": empty token`},
		{".orders", `invalid subject ".orders": empty token`},
		{"orders..paid", `invalid subject "orders..paid": empty token`},
		{"orders.>.paid", `invalid subject "orders.>.paid": ">" must be the last token`},
		{"orders.cre*", `invalid subject "orders.cre*": "*" and ">" must be whole tokens`},
		{"orders.a>", `invalid subject "orders.a>": "*" and ">" must be whole tokens`},
		{"orders.**", `invalid subject "orders.**": "*" and ">" must be whole tokens`},
		{"orders paid", `invalid subject "orders paid": contains whitespace`},
		{"orders.\tpaid", `invalid subject "orders.\tpaid": contains whitespace`},
		{"orders.paid\n", `invalid subject "orders.paid\n": contains whitespace`},
	} {
		err := ValidSubject(c.in)
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != c.err {
			t.Errorf("ValidSubject(%q) = %q, want %q", c.in, got, c.err)
		}
	}
}

func TestSubjectMatches(t *testing.T) {
	for _, c := range []struct {
		pattern, subject string
		want             bool
	}{
		{"orders.created", "orders.created", true},
		{"orders.created", "orders.created.x", false},
		{"orders.created", "orders", false},
		{"orders.created", "orders.paid", false},
		{"orders.*", "orders.created", true},
		{"orders.*", "orders", false},
		{"orders.*", "orders.a.b", false},
		{"*.created", "orders.created", true},
		{"orders.*.paid", "orders.eu.paid", true},
		{"orders.*.paid", "orders.eu.shipped", false},
		{"orders.>", "orders.created", true},
		{"orders.>", "orders.a.b.c", true},
		{"orders.>", "orders", false},
		{"orders.>", "ordersx.a", false},
		{">", "anything.at.all", true},
		{">", "x", true},
		{"*", "x", true},
		{"*", "x.y", false},
		{"*.>", "x", false},
		{"*.>", "x.y", true},
		{"orders.created", "", false},
		{"a", "a", true},
		{"a", "ab", false},
		{"ab", "a", false},
	} {
		if got := SubjectMatches(c.pattern, c.subject); got != c.want {
			t.Errorf("SubjectMatches(%q, %q) = %v, want %v", c.pattern, c.subject, got, c.want)
		}
	}
}

func TestCovers(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want bool
	}{
		{"orders.>", "orders.created", true},
		{"orders.>", "orders.*", true},
		{"orders.>", "orders.>", true},
		{"orders.>", "orders.*.paid", true},
		{"orders.>", "orders", false},
		{"orders.*", "orders.created", true},
		{"orders.*", "orders.*", true},
		{"orders.*", "orders.>", false},
		{"orders.*", "orders.a.b", false},
		{"orders.created", "orders.created", true},
		{"orders.created", "orders.*", false},
		{"orders.created", "orders.>", false},
		{"orders.*.paid", "orders.eu.paid", true},
		{"orders.*.paid", "orders.eu.*", false},
		{"orders.eu.*", "orders.*.paid", false},
		{">", "a.b.c", true},
		{">", "*", true},
		{"*.>", ">", false},
		{"*", ">", false},
		{"a.b", "a", false},
		{"a", "a.b", false},
	} {
		if got := Covers(c.a, c.b); got != c.want {
			t.Errorf("Covers(%q, %q) = %v, want %v", c.a, c.b, got, c.want)
		}
	}
}

func TestOverlaps(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want bool
	}{
		{"orders.*.paid", "orders.eu.*", true},
		{"orders.>", "orders.created", true},
		{"orders.created", "orders.paid", false},
		{"orders.*", "orders.a.b", false},
		{"orders.*", "orders.>", true},
		{"a.b", "a", false},
		{"a.>", "a", false},
		{"*.b", "a.*", true},
		{"x.>", "*.y.z", true},
	} {
		if got := Overlaps(c.a, c.b); got != c.want {
			t.Errorf("Overlaps(%q, %q) = %v, want %v", c.a, c.b, got, c.want)
		}
		if got := Overlaps(c.b, c.a); got != c.want {
			t.Errorf("Overlaps(%q, %q) = %v, want %v", c.b, c.a, got, c.want)
		}
	}
}

func TestReduceSubjects(t *testing.T) {
	for _, c := range []struct {
		in, want []string
	}{
		{nil, nil},
		{[]string{"orders.>", "orders.created"}, []string{"orders.>"}},
		{[]string{"orders.created", "orders.>"}, []string{"orders.>"}},
		{[]string{"orders.created", "orders.created", ""}, []string{"orders.created"}},
		{[]string{"shipments.eta_updated", "orders.created", "shipments.>", "customers.>", "inventory.stockout"},
			[]string{"customers.>", "inventory.stockout", "orders.created", "shipments.>"}},
		{[]string{"orders.*", "orders.created", "orders.a.b"}, []string{"orders.*", "orders.a.b"}},
		{[]string{"orders.*", "orders.>"}, []string{"orders.>"}},
		// Partial overlaps are merged into one pattern covering both.
		{[]string{"orders.*.paid", "orders.eu.*"}, []string{"orders.*.*"}},
		{[]string{"orders.eu.>", "orders.*.paid"}, []string{"orders.*.>"}},
		{[]string{"orders.*.paid", "orders.eu.*", "orders.us.x"}, []string{"orders.*.*"}},
		{[]string{"a.*.c.d", "a.b.*.d", "a.b.c.*"}, []string{"a.*.*.*"}},
	} {
		got := reduceSubjects(c.in)
		if !slices.Equal(got, c.want) {
			t.Errorf("reduceSubjects(%q) = %q, want %q", c.in, got, c.want)
		}
		// The result overlaps nowhere and matches all the input did.
		for i, a := range got {
			for j, b := range got {
				if i != j && Overlaps(a, b) {
					t.Errorf("reduceSubjects(%q): %q overlaps %q", c.in, a, b)
				}
			}
		}
		for _, s := range c.in {
			if s == "" {
				continue
			}
			if !slices.ContainsFunc(got, func(g string) bool { return Covers(g, s) }) {
				t.Errorf("reduceSubjects(%q) = %q loses %q", c.in, got, s)
			}
		}
	}
}

func TestSubjectMatchesDoesNotAllocate(t *testing.T) {
	if n := testing.AllocsPerRun(100, func() {
		SubjectMatches("orders.*.>", "orders.eu.paid.now")
		Covers("orders.>", "orders.*.paid")
	}); n != 0 {
		t.Errorf("allocs = %v", n)
	}
}

func TestReduceSubjectsIsFastForManySubjects(t *testing.T) {
	var in []string
	for i := 0; i < 5000; i++ {
		in = append(in, fmt.Sprintf("orders.o%d.created", i), fmt.Sprintf("svc%d.*.event", i), fmt.Sprintf("svc%d.x.event", i))
	}
	in = append(in, "orders.>")
	start := time.Now()
	got := reduceSubjects(in)
	if len(got) != 5001 || got[0] != "orders.>" {
		t.Errorf("got %d subjects, first %q", len(got), got[0])
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("took %v", d)
	}
}
