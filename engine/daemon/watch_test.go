package daemon

import (
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/fsnotify/fsnotify"
)

func TestWatchRelevant(t *testing.T) {
	dir := t.TempDir()
	for _, d := range []string{"sub", "tests", ".git"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	rw, err := newRuleWatcher(dir, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer rw.w.Close()
	if !rw.dirs[dir] || !rw.dirs[filepath.Join(dir, "sub")] || rw.dirs[filepath.Join(dir, "tests")] || rw.dirs[filepath.Join(dir, ".git")] {
		t.Errorf("watched directories: %v", rw.dirs)
	}
	p := func(rel string) string { return filepath.Join(dir, rel) }
	for _, c := range []struct {
		name string
		op   fsnotify.Op
		want bool
	}{
		{"a.yaml", fsnotify.Write, true},
		{"a.yaml", fsnotify.Create, true},
		{"a.yaml", fsnotify.Rename, true},
		{"a.yaml", fsnotify.Remove, true},
		{"a.yaml", fsnotify.Chmod, false},
		{"sub/b.yaml", fsnotify.Write, true},
		{"a.yaml.tmp", fsnotify.Create, false},
		{"a.yml", fsnotify.Write, false},
		{".a.yaml.swp", fsnotify.Write, false},
		{"a_test.yaml", fsnotify.Write, false},
		{"tests/t.yaml", fsnotify.Write, false},
		{".git/x.yaml", fsnotify.Write, false},
		{"..data", fsnotify.Create, true}, // ConfigMap swap
		{"sub", fsnotify.Remove, true},    // a watched directory went away
	} {
		if got := rw.relevant(fsnotify.Event{Name: p(c.name), Op: c.op}); got != c.want {
			t.Errorf("%s %s: relevant = %v, want %v", c.op, c.name, got, c.want)
		}
	}
	// A new directory is relevant and watched from then on.
	if err := os.Mkdir(p("new"), 0o755); err != nil {
		t.Fatal(err)
	}
	if !rw.relevant(fsnotify.Event{Name: p("new"), Op: fsnotify.Create}) || !rw.dirs[p("new")] {
		t.Errorf("new directory not watched: %v", rw.dirs)
	}
}

func TestWatchSingleFile(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "rules.yaml")
	if err := os.WriteFile(file, []byte("rules: []\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	rw, err := newRuleWatcher(file, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer rw.w.Close()
	if !rw.relevant(fsnotify.Event{Name: file, Op: fsnotify.Create}) {
		t.Error("an atomic save of the rules file is not relevant")
	}
	if rw.relevant(fsnotify.Event{Name: filepath.Join(dir, "other.yaml"), Op: fsnotify.Write}) {
		t.Error("a sibling file is relevant")
	}
}
