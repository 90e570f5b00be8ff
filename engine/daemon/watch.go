package daemon

import (
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
)

// ruleWatcher reloads the rules when the rules directory changes. It
// watches the directory and every subdirectory the loader reads (hidden
// and tests directories are skipped, as the loader skips them), adds
// directories created later, and reacts to *.yaml files being created,
// written, removed or renamed — which covers editors' atomic saves (write
// a temporary file, rename it over the original). Kubernetes ConfigMap
// mounts swap a "..data" symlink instead of touching the files; that swap
// counts as a change too. Changes are debounced: one reload after the
// directory has been quiet for a moment, however many events a save made.
type ruleWatcher struct {
	w    *fsnotify.Watcher
	log  *slog.Logger
	root string // the rules directory, cleaned
	file string // set when the rules "directory" is a single file
	dirs map[string]bool
}

func newRuleWatcher(path string, log *slog.Logger) (*ruleWatcher, error) {
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("watch %s: %w", path, err)
	}
	rw := &ruleWatcher{w: fw, log: log, root: filepath.Clean(path), dirs: map[string]bool{}}
	st, err := os.Stat(rw.root)
	if err != nil {
		fw.Close()
		return nil, fmt.Errorf("watch %s: %w", path, err)
	}
	if !st.IsDir() {
		// A single file is replaced, not edited in place, by most editors:
		// watch its directory and look at events on its name only.
		rw.file = rw.root
		rw.root = filepath.Dir(rw.root)
		if err := fw.Add(rw.root); err != nil {
			fw.Close()
			return nil, fmt.Errorf("watch %s: %w", rw.root, err)
		}
		return rw, nil
	}
	if err := rw.addTree(rw.root); err != nil {
		fw.Close()
		return nil, err
	}
	return rw, nil
}

// addTree watches dir and the subdirectories under it the loader reads.
func (rw *ruleWatcher) addTree(dir string) error {
	return filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			if p == dir {
				return fmt.Errorf("watch %s: %w", p, err)
			}
			return nil // vanished while we walked: its removal is an event of its own
		}
		if !e.IsDir() {
			return nil
		}
		if p != rw.root && skippedDir(e.Name()) {
			return filepath.SkipDir
		}
		if err := rw.w.Add(p); err != nil {
			return fmt.Errorf("watch %s: %w", p, err)
		}
		rw.dirs[p] = true
		return nil
	})
}

// skippedDir mirrors the loader: hidden directories and "tests" hold no
// rules.
func skippedDir(name string) bool {
	return strings.HasPrefix(name, ".") || name == "tests"
}

// relevant says whether an event may change the rule set, and keeps the
// set of watched directories up to date.
func (rw *ruleWatcher) relevant(ev fsnotify.Event) bool {
	if ev.Op == fsnotify.Chmod {
		return false
	}
	name := filepath.Base(ev.Name)
	if rw.file != "" {
		return ev.Name == rw.file || name == "..data"
	}
	if name == "..data" {
		return true
	}
	rel, err := filepath.Rel(rw.root, ev.Name)
	if err != nil {
		return false
	}
	parts := strings.Split(rel, string(filepath.Separator))
	for _, p := range parts[:len(parts)-1] {
		if skippedDir(p) {
			return false
		}
	}
	if rw.dirs[ev.Name] && ev.Has(fsnotify.Remove|fsnotify.Rename) {
		// A watched directory went away (or moved: its watch would report
		// the old path, so drop it; a move within the tree is a Create).
		_ = rw.w.Remove(ev.Name)
		delete(rw.dirs, ev.Name)
		return true
	}
	if ev.Has(fsnotify.Create) {
		if st, err := os.Stat(ev.Name); err == nil && st.IsDir() {
			if skippedDir(name) {
				return false
			}
			if err := rw.addTree(ev.Name); err != nil {
				rw.log.Warn("cannot watch new directory; reload by SIGHUP after changing it", "dir", ev.Name, "err", err)
			}
			return true
		}
	}
	if strings.HasPrefix(name, ".") || strings.HasSuffix(name, "_test.yaml") {
		return false
	}
	return strings.HasSuffix(name, ".yaml")
}

// run calls reload once per burst of changes, debounce after the last
// event, until ctx ends.
func (rw *ruleWatcher) run(ctx context.Context, debounce time.Duration, reload func()) {
	defer rw.w.Close()
	t := time.NewTimer(debounce)
	t.Stop()
	var changed []string
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-rw.w.Events:
			if !ok {
				return
			}
			if !rw.relevant(ev) {
				continue
			}
			if len(changed) < 10 {
				changed = append(changed, ev.Name)
			}
			t.Reset(debounce)
		case err, ok := <-rw.w.Errors:
			if !ok {
				return
			}
			// An overflow loses events: reload to be safe.
			rw.log.Warn("watching the rules directory", "err", err)
			t.Reset(debounce)
		case <-t.C:
			rw.log.Info("rules changed; reloading", "files", changed)
			changed = changed[:0]
			reload()
		}
	}
}
