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

// FilesStatus is the part of GET /status about plain files: the files
// spool, its inboxes and its uploads. Its counts are of spool entries: a
// file each, or a bundle of up to 256 small files.
type FilesStatus struct {
	Spool string `json:"spool"`
	// Waiting is the entries waiting for their upload, the oldest
	// OldestSeconds old.
	Waiting       int     `json:"waiting"`
	OldestSeconds float64 `json:"oldest_waiting_seconds"`
	// Refused is the entries a target refused for good, waiting in the
	// failed queue for `ferry spool retry`.
	Refused int `json:"refused"`
	// UploadsFailingSince is when uploads began to fail, LastError why;
	// both unset while they work.
	UploadsFailingSince *time.Time    `json:"uploads_failing_since,omitempty"`
	LastError           string        `json:"last_error,omitempty"`
	Inboxes             []InboxStatus `json:"inboxes"`
	// Error says why the spool could not be looked at; the counts are
	// then zero.
	Error string `json:"error,omitempty"`

	oldest time.Duration
}

// InboxStatus is one inbox of a FilesStatus: since when it cannot be read
// or hand its files over, and why; both unset while it works.
type InboxStatus struct {
	Path         string     `json:"path"`
	FailingSince *time.Time `json:"failing_since,omitempty"`
	Error        string     `json:"error,omitempty"`
}

// filesStatus returns the state of the daemon's plain files at now; nil
// without inboxes.
func (d *daemon) filesStatus(now time.Time) *FilesStatus {
	if d.files == nil {
		return nil
	}
	st := &FilesStatus{Spool: d.o.FilesSpool, Inboxes: []InboxStatus{}}
	if since, err := d.filesUploads.Failing(); !since.IsZero() {
		st.UploadsFailingSince, st.LastError = &since, err.Error()
	}
	for _, in := range d.inboxes {
		is := InboxStatus{Path: in.path}
		if since, err := in.w.Failing(); !since.IsZero() {
			is.FailingSince, is.Error = &since, err.Error()
		}
		st.Inboxes = append(st.Inboxes, is)
	}
	rep, err := spool.Check(d.o.FilesSpool, spool.Limits{}, now)
	if err != nil {
		st.Error = err.Error()
		return st
	}
	for _, q := range rep.Queues {
		switch q.Name {
		case uploader.FilesQueue:
			st.Waiting, st.oldest, st.OldestSeconds = q.Entries, q.Oldest, q.Oldest.Seconds()
		case spool.FailedQueue:
			st.Refused = q.Entries
		}
	}
	return st
}

// filesTrouble returns, for /healthz, a line for each inbox that could not
// be read, or whose files could not be handed to the spool, for longer
// than limit; one when a file has waited in the files spool longer than
// limit; and one when files were refused for good: the files handed to
// ferry are not where their owners think.
func (d *daemon) filesTrouble(limit time.Duration, now time.Time) []string {
	st := d.filesStatus(now)
	if st == nil {
		return nil
	}
	if limit <= 0 {
		limit = config.DefaultHealthzMaxLag
	}
	var out []string
	for _, in := range st.Inboxes {
		if in.FailingSince != nil && now.Sub(*in.FailingSince) > limit {
			out = append(out, fmt.Sprintf("inbox %s: failing for %s (limit %s): %s", in.Path, now.Sub(*in.FailingSince).Round(time.Second), limit, in.Error))
		}
	}
	if st.Error != "" {
		return append(out, fmt.Sprintf("files spool %s: %s", st.Spool, st.Error))
	}
	if st.oldest > limit {
		out = append(out, fmt.Sprintf("files spool %s: the oldest of %d uploads has waited %s (limit %s)",
			st.Spool, st.Waiting, st.oldest.Round(time.Second), limit))
	}
	if st.Refused > 0 {
		// Refused for good: no retry will ship them, and only a person
		// can, so the check stays red until one does.
		out = append(out, fmt.Sprintf("files spool %s: %d uploads (a file, or a bundle of small files, each) refused for good by their target; 'ferry spool fsck %s' says why, 'ferry spool retry' sends them again",
			st.Spool, st.Refused, st.Spool))
	}
	return out
}
