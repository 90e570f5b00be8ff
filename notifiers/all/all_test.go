package all

import (
	"slices"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/proactived/proactived/notifiers"
	"github.com/proactived/proactived/notifiers/notifiertest"
)

func TestRegistry(t *testing.T) {
	r := Registry()
	want := []string{"exec", "log", "nats", "shoutrrr", "smtp", "webhook"}
	if got := r.Types(); !slices.Equal(got, want) {
		t.Fatalf("types %v, want %v", got, want)
	}
	// Two registries are independent (no globals).
	if err := Registry().Register("custom", func(string, *yaml.Node, notifiers.Deps) (notifiers.Notifier, error) { return nil, nil }); err != nil {
		t.Fatal(err)
	}
	if _, ok := r.Lookup("custom"); ok {
		t.Error("registries share state")
	}
}

// TestExamplesThroughRegistry parses every example through the registry,
// the way the config loader will.
func TestExamplesThroughRegistry(t *testing.T) {
	r := Registry()
	for typ, src := range Examples() {
		f, ok := r.Lookup(typ)
		if !ok {
			t.Fatalf("no factory for %q", typ)
		}
		for name, node := range notifiertest.ExampleChannels(t, src, typ) {
			if _, err := f(name, node, notifiers.Deps{}); err != nil {
				t.Errorf("%s example %q: %v", typ, name, err)
			}
		}
	}
}
