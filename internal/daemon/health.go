package daemon

import (
	"fmt"
	"time"

	"github.com/ferrydb/ferry/internal/config"
	"github.com/ferrydb/ferry/internal/inbox"
	"github.com/ferrydb/ferry/internal/spool"
	"github.com/ferrydb/ferry/internal/uploader"
)

// troubles returns one line per target that is too far behind or has been
// failing too long, for /healthz: an outage must turn a health check red
// long before anyone reads a log.
func troubles(units []*unit, limit time.Duration, now time.Time) []string {
	if limit <= 0 {
		limit = config.DefaultHealthzMaxLag
	}
	var out []string
	for _, u := range units {
		st := u.Status()
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

// watchedInbox is an inbox of the config and its watcher.
type watchedInbox struct {
	path string
	w    *inbox.Watcher
}

// filesTrouble returns a line for each inbox that could not be read, or
// whose files could not be handed to the spool, for longer than limit;
// one when a file has waited in the files spool longer than limit; and
// one when files were refused for good: the files handed to ferry are
// not where their owners think.
func (d *daemon) filesTrouble(limit time.Duration, now time.Time) []string {
	if d.files == nil {
		return nil
	}
	if limit <= 0 {
		limit = config.DefaultHealthzMaxLag
	}
	var out []string
	for _, in := range d.inboxes {
		if since, err := in.w.Failing(); !since.IsZero() && now.Sub(since) > limit {
			out = append(out, fmt.Sprintf("inbox %s: failing for %s (limit %s): %v", in.path, now.Sub(since).Round(time.Second), limit, err))
		}
	}
	rep, err := spool.Check(d.o.FilesSpool, spool.Limits{}, now)
	if err != nil {
		return append(out, fmt.Sprintf("files spool %s: %v", d.o.FilesSpool, err))
	}
	for _, q := range rep.Queues {
		switch {
		case q.Name == uploader.FilesQueue && q.Oldest > limit:
			out = append(out, fmt.Sprintf("files spool %s: the oldest of %d files has waited %s (limit %s)",
				d.o.FilesSpool, q.Entries, q.Oldest.Round(time.Second), limit))
		case q.Name == spool.FailedQueue && q.Entries > 0:
			// Refused for good: no retry will ship them, and only a
			// person can, so the check stays red until one does.
			out = append(out, fmt.Sprintf("files spool %s: %d files refused for good by their target; 'ferry spool fsck %s' says why, 'ferry spool retry' sends them again",
				d.o.FilesSpool, q.Entries, d.o.FilesSpool))
		}
	}
	return out
}
