package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/ferrydb/ferry/internal/config"
	"github.com/ferrydb/ferry/internal/daemon"
)

// controlClient talks to the daemon replicating one database, over the
// control socket beside it, or, for a database found under a dir entry,
// the one in that directory.
type controlClient struct {
	db     string
	socket string
	http   *http.Client
	// all asks for every database the socket answers for, not db alone.
	all bool
}

// controlOf talks to the daemon replicating the config entry db, about
// all its databases: on the database's own socket, or its directory's.
func controlOf(db config.DB) *controlClient {
	if db.Dir != nil {
		return newDirControlClient(db.Dir.Path)
	}
	return newControlClient(db.Path)
}

// newDirControlClient talks to the daemon replicating the databases of a
// dir entry for directory dir, about all of them.
func newDirControlClient(dir string) *controlClient {
	c := controlAt(dir, daemon.DirSocketPath(dir))
	c.all = true
	return c
}

func newControlClient(dbPath string) *controlClient {
	// The nearest socket that exists; the database's own when none does,
	// for the message.
	socks := daemon.SocketPaths(dbPath)
	sock := socks[0]
	for _, s := range socks {
		if fi, err := os.Stat(s); err == nil && fi.Mode()&os.ModeSocket != 0 {
			sock = s
			break
		}
	}
	return controlAt(dbPath, sock)
}

// controlAt talks about db to the daemon answering on the socket sock.
func controlAt(db, sock string) *controlClient {
	return &controlClient{db: db, socket: sock, http: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
	}}}
}

func (c *controlClient) do(ctx context.Context, method, path string, out any) (int, error) {
	if !c.all {
		sep := "?"
		if strings.Contains(path, "?") {
			sep = "&"
		}
		path += sep + "db=" + url.QueryEscape(c.db)
	}
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
	if resp.StatusCode == http.StatusNotFound {
		return resp.StatusCode, fmt.Errorf("the daemon answering on %s does not replicate %s", c.socket, c.db)
	}
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
