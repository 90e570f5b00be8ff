package rules

import (
	"sort"
	"strings"
)

// Error is one problem in a rule file, with its position.
type Error struct {
	Pos Pos
	Msg string
}

// Error formats the problem as "file:line:col: msg". A problem with no line
// (an unreadable file, a YAML error the parser gave no line for) prints as
// "file: msg", and one with no file (a bad option) as "msg".
func (e Error) Error() string {
	switch {
	case e.Pos.File == "":
		return e.Msg
	case e.Pos.Line == 0:
		return e.Pos.File + ": " + e.Msg
	}
	return e.Pos.String() + ": " + e.Msg
}

// ErrorList is every problem found while loading a rule set, sorted by file,
// line and column. Load returns it (as a *ErrorList) instead of stopping at
// the first problem.
type ErrorList struct {
	Errors []Error
}

// Error prints each problem on its own line.
func (l *ErrorList) Error() string {
	var b strings.Builder
	for i, e := range l.Errors {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(e.Error())
	}
	return b.String()
}

// Strings returns each problem formatted as Error does.
func (l *ErrorList) Strings() []string {
	out := make([]string, len(l.Errors))
	for i, e := range l.Errors {
		out[i] = e.Error()
	}
	return out
}

// sort orders the problems by file, line and column (stable, so problems at
// one position keep the order they were found in) and drops exact repeats.
func (l *ErrorList) sort() {
	sort.SliceStable(l.Errors, func(i, j int) bool {
		a, b := l.Errors[i].Pos, l.Errors[j].Pos
		if a.File != b.File {
			return a.File < b.File
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Col < b.Col
	})
	out := l.Errors[:0]
	for i, e := range l.Errors {
		if i > 0 && e == l.Errors[i-1] {
			continue
		}
		out = append(out, e)
	}
	l.Errors = out
}
