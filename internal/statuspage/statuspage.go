// Package statuspage serves the daemon's status page: one HTML page, with
// its script and style sheet built into the binary, that reads GET /status
// and GET /status/lag-history and shows one row per database and target.
//
// The page needs nothing outside the daemon: no build step, no external
// URL, and it fetches only relative URLs, so it works behind a proxy that
// mounts the daemon under a path. It shows every text it is sent as text,
// never as markup, because database paths and error messages come from
// outside, and its Content-Security-Policy forbids inline and foreign
// scripts should that ever fail. It filters and sorts every row, and draws
// at most a few hundred at a time so that 10,000 databases stay fast.
//
// The lag history is kept by a [History], which the daemon feeds with
// every target's lag every few seconds. GET /status/lag-history answers
//
//	{"step_seconds": 60, "end": "2025-01-02T15:04:00Z",
//	 "series": [{"db": "/srv/a.db", "target": "s3://b/a.db", "lag": [0, 0, 12.5, ...]}]}
//
// with 60 peaks per series, oldest first, the last one for the minute that
// ends at end. Only targets that lagged during the hour have a series.
package statuspage

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
)

//go:embed ui
var ui embed.FS

// Handler serves the page at GET /, its files under GET /ui/, and h at
// GET /status/lag-history; every other path is not found. Mount it at the
// root of a mux whose own, more specific patterns (GET /status and the
// rest) take precedence.
func Handler(h *History) http.Handler {
	mux := http.NewServeMux()
	index := mustRead("ui/index.html")
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		hdr := w.Header()
		hdr.Set("Content-Type", "text/html; charset=utf-8")
		hdr.Set("Content-Security-Policy", csp)
		hdr.Set("X-Content-Type-Options", "nosniff")
		hdr.Set("Cache-Control", "no-cache")
		w.Write(index)
	})
	for _, name := range []string{"app.js", "style.css", "favicon.svg"} {
		body := mustRead("ui/" + name)
		sum := sha256.Sum256(body)
		etag := `"` + hex.EncodeToString(sum[:8]) + `"`
		mux.HandleFunc("GET /ui/"+name, func(w http.ResponseWriter, req *http.Request) {
			hdr := w.Header()
			hdr.Set("X-Content-Type-Options", "nosniff")
			// A new binary brings new files under the same name; the
			// ETag lets a browser revalidate instead of running the old
			// script against a changed /status.
			hdr.Set("Cache-Control", "no-cache")
			hdr.Set("ETag", etag)
			http.ServeFileFS(w, req, ui, "ui/"+name)
		})
	}
	mux.Handle("GET /status/lag-history", h)
	return mux
}

// csp lets the page load only its own script, style sheet and JSON.
const csp = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

func mustRead(name string) []byte {
	b, err := fs.ReadFile(ui, name)
	if err != nil {
		panic("statuspage: embedded " + name + " missing: " + err.Error())
	}
	return b
}
