package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"syscall"
	"time"

	"github.com/ferrydb/ferry/internal/daemon"
)

// controlClient talks to the daemon replicating one database, over the
// control socket beside it.
type controlClient struct {
	db     string
	socket string
	http   *http.Client
}

func newControlClient(dbPath string) *controlClient {
	sock := daemon.SocketPath(dbPath)
	return &controlClient{db: dbPath, socket: sock, http: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
	}}}
}

func (c *controlClient) do(ctx context.Context, method, path string, out any) (int, error) {
	req, err := http.NewRequestWithContext(ctx, method, "http://ferry"+path, nil)
	if err != nil {
		return 0, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
			return 0, fmt.Errorf("no ferry daemon is replicating %s (nothing answers on %s)", c.db, c.socket)
		}
		return 0, fmt.Errorf("ask the daemon replicating %s: %w", c.db, err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return resp.StatusCode, fmt.Errorf("daemon for %s answered %s with no report", c.db, resp.Status)
	}
	return resp.StatusCode, nil
}

func (c *controlClient) status(ctx context.Context) (daemon.StatusReport, error) {
	var rep daemon.StatusReport
	_, err := c.do(ctx, http.MethodGet, "/status", &rep)
	return rep, err
}

func (c *controlClient) sync(ctx context.Context, timeout time.Duration) (daemon.SyncReport, error) {
	var rep daemon.SyncReport
	_, err := c.do(ctx, http.MethodPost, "/sync?timeout="+url.QueryEscape(timeout.String()), &rep)
	return rep, err
}
