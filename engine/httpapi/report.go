package httpapi

import (
	"database/sql"
	"errors"
	"fmt"
	"net/http"

	"github.com/proactived/proactived/engine/clock"
	"github.com/proactived/proactived/engine/report"
)

// RegisterReport adds GET /api/v1/report — the effectiveness report of
// `proactived report` (docs/report.md) — to mux. Query parameters: since,
// until (a duration back from now such as 30d, or RFC 3339), window (7d),
// rule, by (entity | customer), topic, and format (json, the default;
// csv; text). db is a read-only handle on the store.
func RegisterReport(mux *http.ServeMux, db *sql.DB, clk clock.Clock) {
	if clk == nil {
		clk = clock.Wall{}
	}
	mux.HandleFunc("GET /api/v1/report", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		o, err := report.OptionsFromQuery(q, clk.Now())
		if err != nil {
			WriteError(w, http.StatusBadRequest, err)
			return
		}
		format := q.Get("format")
		if format != "" && format != "json" && format != "csv" && format != "text" {
			WriteError(w, http.StatusBadRequest, fmt.Errorf("format %q: want json, csv or text", format))
			return
		}
		o.Clock = clk
		rep, err := report.Compute(r.Context(), db, o)
		if err != nil {
			status := http.StatusInternalServerError
			if errors.Is(err, r.Context().Err()) && r.Context().Err() != nil {
				status = http.StatusServiceUnavailable
			}
			WriteError(w, status, err)
			return
		}
		// A write error here is the client going away; nothing to do.
		switch format {
		case "csv":
			w.Header().Set("Content-Type", "text/csv; charset=utf-8")
			_ = report.WriteCSV(w, rep)
		case "text":
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			_ = report.WriteText(w, rep)
		default:
			WriteJSON(w, http.StatusOK, rep)
		}
	})
	mux.HandleFunc("/api/v1/report", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", "GET")
		WriteError(w, http.StatusMethodNotAllowed, fmt.Errorf("method %s not allowed; use GET", r.Method))
	})
}
