//go:build !unix

package execnotify

import "os/exec"

// killGroup: without process groups, cancellation kills the program only
// (exec.CommandContext's default).
func killGroup(*exec.Cmd) {}
