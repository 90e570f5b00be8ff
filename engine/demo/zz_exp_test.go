package demo

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/proactived/proactived/engine/config"
	"github.com/proactived/proactived/engine/daemon"
	"github.com/proactived/proactived/engine/report"
	"github.com/proactived/proactived/engine/store"
)

func TestExp(t *testing.T) {
	if os.Getenv("EXP") == "" {
		t.Skip()
	}
	ctx := context.Background()
	cfg, err := config.Load("../../proactived.yaml", true)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Rules = "../../rules.d"
	set, err := daemon.LoadRules(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	st, err := store.Open(ctx, filepath.Join(dir, "proactived.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	orders, _ := strconv.Atoi(os.Getenv("EXP"))
	end := time.Now().UTC()
	span := 7 * 24 * time.Hour
	res, err := Compressed(ctx, CompressedOptions{Store: st, Config: cfg, Rules: set, Shop: Shop(1, end.Add(-span), span, orders), End: end,
		Progress: func(p Progress) { t.Log(p.String()) }})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", res)
	s, err := Summarize(ctx, st.R, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", s)
	rep, err := report.Compute(ctx, st.R, report.Options{})
	if err != nil {
		t.Fatal(err)
	}
	report.WriteText(os.Stderr, rep)
}

func TestExpErr(t *testing.T) {
	if os.Getenv("EXP") == "" {
		t.Skip()
	}
	ctx := context.Background()
	cfg, _ := config.Load("../../proactived.yaml", true)
	cfg.Rules = "../../rules.d"
	set, _ := daemon.LoadRules(cfg)
	st, _ := store.Open(ctx, filepath.Join(t.TempDir(), "proactived.db"))
	defer st.Close()
	end := time.Now().UTC()
	span := 3 * 24 * time.Hour
	_, err := Compressed(ctx, CompressedOptions{Store: st, Config: cfg, Rules: set, Shop: Shop(1, end.Add(-span), span, 500), End: end})
	if err != nil {
		t.Fatal(err)
	}
	rows, _ := st.R.Query(`SELECT rule, verdict, reason, count(*) FROM decisions WHERE verdict IN ('error','superseded','opted_out','capped') GROUP BY 1,2,3 ORDER BY 4 DESC LIMIT 20`)
	for rows.Next() {
		var a, b, c string
		var n int
		rows.Scan(&a, &b, &c, &n)
		t.Log(a, b, n, c)
	}
}
