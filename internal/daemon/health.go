package daemon

import (
	"fmt"
	"time"

	"github.com/ferrydb/ferry/internal/capture"
	"github.com/ferrydb/ferry/internal/config"
)

// troubles returns one line per target that is too far behind or has been
// failing too long, for /healthz: an outage must turn a health check red
// long before anyone reads a log.
func troubles(dbs []*capture.Replicator, limit time.Duration, now time.Time) []string {
	if limit <= 0 {
		limit = config.DefaultHealthzMaxLag
	}
	var out []string
	for _, r := range dbs {
		st := r.Status()
		for _, t := range st.Targets {
			switch {
			case !t.FailingSince.IsZero() && now.Sub(t.FailingSince) > limit:
				out = append(out, fmt.Sprintf("%s -> %s: failing for %s (limit %s): %s",
					st.DB, t.URL, now.Sub(t.FailingSince).Round(time.Second), limit, t.LastError))
			case t.Lag > limit:
				out = append(out, fmt.Sprintf("%s -> %s: lag %s (limit %s); replicated txid %d of %d",
					st.DB, t.URL, t.Lag.Round(time.Second), limit, t.Replicated, st.TXID))
			}
		}
	}
	return out
}
