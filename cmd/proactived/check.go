package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/proactived/proactived/engine/daemon"
	"github.com/proactived/proactived/notifiers/all"
)

// cmdCheck validates the config, every rule file and every channel, and
// prints each problem as file:line:col: message.
func cmdCheck(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("check", stderr)
	var c common
	c.register(fs)
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return 2
	}
	cfg, err := c.load()
	if err != nil {
		fmt.Fprintln(stdout, err)
		return 1
	}
	if len(pos) == 1 && c.rules == "" { // `proactived check rules.d`
		cfg.Rules = pos[0]
	}
	problems := 0
	set, err := daemon.LoadRules(cfg)
	if err != nil {
		for _, line := range strings.Split(strings.TrimSpace(err.Error()), "\n") {
			fmt.Fprintln(stdout, line)
			problems++
		}
	}
	if _, err := daemon.BuildChannels(cfg, all.Registry(), nil, nil); err != nil {
		for _, line := range strings.Split(strings.TrimSpace(err.Error()), "\n") {
			fmt.Fprintln(stdout, line)
			problems++
		}
	}
	if problems > 0 {
		fmt.Fprintf(stdout, "%d problem(s) found\n", problems)
		return 1
	}
	fmt.Fprintf(stdout, "OK: %d rules, %d entities, %d templates in %d files under %s; %d channels\n",
		len(set.Rules), len(set.Entities), len(set.Templates), len(set.Files), cfg.Rules, len(cfg.Channels))
	return 0
}
