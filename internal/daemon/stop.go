package daemon

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/ferrydb/ferry/internal/config"
)

// flush answers a request to stop (SIGTERM, SIGINT, the end of an -exec
// child): every database's log is captured to its end and shipped, and the
// daemon waits, up to timeout, for every target to hold it. Containers and
// service managers stop a sidecar this way, often just before its disk
// goes away, so what was committed must be out by then. What each target
// holds is logged; an error says which target still lacks what, which
// stays in the spool for the next start.
func (d *daemon) flush(timeout time.Duration) error {
	if timeout <= 0 {
		timeout = config.DefaultShutdownTimeout
	}
	d.o.Log.Info("stopping: shipping what was committed", "timeout", timeout)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	// Its error is the timeout or a replicator already stopped; what each
	// target holds, read below, is the answer either way.
	_ = syncUnits(ctx, d.fleet.all(), false)
	for !d.filesDrained() && ctx.Err() == nil {
		// The files spool and the inboxes have no event to wait on; a
		// short poll bounds the wait to what the uploads take.
		select {
		case <-ctx.Done():
		case <-time.After(20 * time.Millisecond):
		}
	}
	var short, stopped []string
	for _, u := range d.fleet.all() {
		st := u.Status()
		behind := false
		for _, t := range st.Targets {
			if t.Stopped {
				// Waiting could not help, and the spool is not where the
				// rest is: the target refuses this replicator's history.
				behind = true
				stopped = append(stopped, fmt.Sprintf("%s: %s stopped replicating: %s", st.DB, t.URL, t.LastError))
				continue
			}
			if t.Replicated < st.TXID {
				behind = true
				short = append(short, fmt.Sprintf("%s: %s holds txid %d of %d", st.DB, t.URL, t.Replicated, st.TXID))
				d.o.Log.Error("stopped before a target held every transaction; the rest stays in the spool",
					"db", st.DB, "target", t.URL, "replicated_txid", t.Replicated, "txid", st.TXID)
			}
		}
		if !behind {
			d.o.Log.Info("stopped; every target holds the last transaction", "db", st.DB, "txid", st.TXID)
		}
	}
	if !d.filesDrained() {
		short = append(short, "files are still waiting in the spool or an inbox")
		d.o.Log.Error("stopped before every file was shipped; they stay in the spool", "spool", d.o.FilesSpool)
	}
	if len(stopped) > 0 {
		return fmt.Errorf("stopped with a target that had stopped replicating (%s)", strings.Join(append(stopped, short...), "; "))
	}
	if len(short) > 0 {
		return fmt.Errorf("stopped after %s with transactions not shipped (%s); they stay in the spool and go out on the next start", timeout, strings.Join(short, "; "))
	}
	return nil
}
