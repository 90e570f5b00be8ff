//go:build !unix

package daemon

import (
	"context"
	"log/slog"
	"time"
)

// lockData does not lock where flock is missing: run one daemon per data
// directory.
func lockData(context.Context, string, time.Duration, *slog.Logger) (func(), error) {
	return func() {}, nil
}
