package daemon

import (
	"context"
	"net/http"

	"github.com/proactived/proactived/engine/console"
	"github.com/proactived/proactived/engine/httpapi"
)

// registerAPI adds the /api/v1 JSON API (docs/api.md) to the authenticated
// mux; httpapi.Options.Extra calls it.
func (d *Daemon) registerAPI(mux *http.ServeMux) {
	v1 := &httpapi.V1{
		DB:        d.st.R,
		Clock:     d.o.Clock,
		Rules:     d.eng.Rules,
		Channels:  d.cfg.ChannelNames(),
		PutEntity: d.eng.PutEntity,
		Entity:    d.eng.Entity,
		Flush:     d.eng.Flush,
		Reload: func(ctx context.Context) (int, error) {
			if err := d.Reload(ctx); err != nil {
				return 0, err
			}
			return len(d.eng.Rules().Rules), nil
		},
		Logger: d.log,
	}
	v1.Register(mux)
	// The ops console at / reads the same store through the same
	// functions (engine/console).
	con, err := console.New(console.Options{
		DB: d.st.R, Rules: d.eng.Rules, Channels: d.cfg.ChannelNames(), Clock: d.o.Clock,
		Logger: d.log.With("component", "console"),
	})
	if err != nil {
		// Its templates are embedded and tested: this is a build defect,
		// and the API stays up without the console.
		d.log.Error("console disabled", "err", err)
		return
	}
	con.Register(mux)
}
