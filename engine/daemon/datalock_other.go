//go:build !unix

package daemon

// lockData does not lock where flock is missing: run one daemon per data
// directory.
func lockData(string) (func(), error) { return func() {}, nil }
