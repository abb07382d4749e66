// Package config owns what a user writes to tell ferry what to do: replica
// URLs (ParseURL) and the YAML config file (Load, Parse).
//
// It promises that whatever it returns has been checked: every path is
// absolute, every replica URL parses, every interval and size is positive
// and defaults are filled in, so no later part of ferry validates them
// again. It accepts only keys that ferry acts on: a key documented for a
// feature that is not built yet is refused, saying so, rather than read
// and ignored. Every error is one line that names the file and line, or
// the URL, and the field at fault. Credentials are held as Secret and
// never appear in an error or in any printed or encoded form of a Config.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/ferrydb/ferry/internal/seal"
)

// DefaultPath is where ferry looks for its config when -config is not
// given.
const DefaultPath = "/etc/ferry.yml"

// Defaults for the settings a config may leave out. The library API
// (package ferry) uses the same ones, so that a database replicated by an
// embedding program behaves as one replicated by the command line.
const (
	DefaultSyncInterval     = time.Second
	DefaultSnapshotInterval = time.Hour
	DefaultMaxSpoolBytes    = 1 << 30
	DefaultHealthzMaxLag    = 5 * time.Minute
	DefaultShutdownTimeout  = 30 * time.Second
	DefaultRetention        = 72 * time.Hour
	DefaultGCInterval       = time.Hour
	DefaultScrubInterval    = 7 * 24 * time.Hour
	// MinLease is the shortest lease ttl ferry takes: a lease is renewed
	// every ttl/3 and must outlast both a slow store request and the skew
	// between machines' clocks.
	MinLease = 3 * time.Second
)

// S3 limits on the size of one part of a multipart upload (the last part
// may be smaller).
const (
	MinPartSize = 5 << 20
	MaxPartSize = 5 << 30
)

// Config is a parsed and validated config file.
type Config struct {
	// Source names where the config came from, for messages.
	Source string

	// Addr is the host:port of the HTTP server (/metrics, /healthz,
	// /status, /sync); empty means no server.
	Addr string
	// Spool is the directory holding every database's spool; empty means
	// each database's spool lives beside it in <db dir>/.<db name>-ferry.
	Spool string
	// LogLevel is "debug", "info", "warn", "error" or empty for unset.
	LogLevel string
	// LogFormat is "text", "json" or empty for unset.
	LogFormat string

	// HealthzMaxLag is how far behind a target may fall, or how long it
	// may keep failing, before /healthz answers 503.
	HealthzMaxLag time.Duration
	// ShutdownTimeout bounds how long ferry waits, when told to stop or
	// when the -exec child exits, for what it captured to reach every
	// target.
	ShutdownTimeout time.Duration

	DBs   []DB
	Files []Inbox
}

// DB is one replicated SQLite database, or, with Dir set, a directory of
// them.
type DB struct {
	// Path is the absolute path of the database file; empty for a
	// directory entry.
	Path string
	// Dir, when set, makes the entry stand for every database its
	// directory holds; each gets the entry's settings and, under every
	// replica URL, the replica <URL>/<path relative to the directory>.
	Dir *Dir
	// Replicas lists the targets, at least one; each is tracked
	// independently.
	Replicas []Replica

	// SyncInterval bounds how often change sets go up under load.
	SyncInterval time.Duration
	// SnapshotInterval is how often a snapshot is taken.
	SnapshotInterval time.Duration
	// MaxSpoolBytes bounds the local spool for this database.
	MaxSpoolBytes int64
	// RestoreIfNotExists restores the database from its replicas when the
	// file is missing at start, and replicates on from there.
	RestoreIfNotExists bool
	// Retention is how long every txid stays restorable; older history is
	// deleted by gc, every GCInterval.
	Retention  time.Duration
	GCInterval time.Duration
	// ScrubInterval is how long one background pass over every object of
	// each replica takes; the scrub reads at a pace that spreads it so.
	ScrubInterval time.Duration
	// Lease, when set, makes the replicator hold a lease of this ttl on
	// every replica of the database, so that a second ferry writing to one
	// of them refuses to start; zero means no lease.
	Lease time.Duration
}

// Dir is a directory whose SQLite databases are replicated alike.
type Dir struct {
	// Path is the absolute path of the directory.
	Path string
	// Pattern is the shell pattern (filepath.Match) a file's name must
	// match; "*.db" when the config gives none.
	Pattern string
	// Recursive looks in subdirectories too, except hidden ones, where
	// ferry keeps its spools.
	Recursive bool
	// Watch picks up databases that appear while ferry runs, and stops
	// replicating ones that vanish.
	Watch bool
}

// DefaultDirPattern is the pattern of a dir entry that gives none.
const DefaultDirPattern = "*.db"

// Replica is one target with the settings that go with it.
type Replica struct {
	Target Target

	// AccessKeyID and SecretAccessKey override the standard AWS
	// credential chain for this replica; both or neither are set.
	AccessKeyID     Secret
	SecretAccessKey Secret

	// PartSize is the multipart upload part size in bytes; 0 means the
	// object store's default.
	PartSize int64

	// MaxRequestsPerSecond caps the calls ferry makes to this replica's
	// store, of every kind and retries included; 0 means no cap of its
	// own.
	MaxRequestsPerSecond float64
	// MaxUploadBytesPerSecond caps the bytes ferry sends to this
	// replica's store; downloads (a restore, a follower) are not capped.
	// 0 means no cap of its own.
	MaxUploadBytesPerSecond int64

	// Keys, when set, encrypt everything ferry stores on this replica
	// (package seal); nil means the replica holds plaintext.
	Keys *seal.Ring
}

// Inbox is a directory whose closed files are shipped to a replica and
// then removed.
type Inbox struct {
	Path    string
	Replica Replica
}

// DB returns the entry for the database at path: the one listing it, or
// the first directory entry whose pattern takes it, with its replicas
// joined as they are for every database found there. It does not look at
// the file.
func (c *Config) DB(path string) (DB, bool) {
	for _, db := range c.DBs {
		if db.Dir == nil && db.Path == path {
			return db, true
		}
	}
	for _, db := range c.DBs {
		if db.Dir == nil {
			continue
		}
		if rel, ok := db.Dir.Takes(path); ok {
			return db.Under(rel), true
		}
	}
	return DB{}, false
}

// Takes reports whether the database at path, absolute, belongs to the
// directory: it lies under it (directly, unless Recursive), its name
// matches the pattern, and no directory on the way is hidden. rel is its
// path relative to the directory, with slashes.
func (d *Dir) Takes(path string) (rel string, ok bool) {
	r, err := filepath.Rel(d.Path, path)
	if err != nil || r == "." || strings.HasPrefix(r, "..") {
		return "", false
	}
	parts := strings.Split(filepath.ToSlash(r), "/")
	if len(parts) > 1 && !d.Recursive {
		return "", false
	}
	for _, p := range parts[:len(parts)-1] {
		if strings.HasPrefix(p, ".") {
			return "", false
		}
	}
	if m, _ := filepath.Match(d.Pattern, parts[len(parts)-1]); !m {
		return "", false
	}
	return filepath.ToSlash(r), true
}

// Under returns the entry of the database at rel, relative to the
// directory of the dir entry db: its path, and each replica's URL joined
// with rel.
func (db DB) Under(rel string) DB {
	one := db
	one.Dir = nil
	one.Path = filepath.Join(db.Dir.Path, filepath.FromSlash(rel))
	one.Replicas = make([]Replica, len(db.Replicas))
	for i, r := range db.Replicas {
		r.Target = r.Target.Join(rel)
		one.Replicas[i] = r
	}
	return one
}

// Name is what messages call the entry: its path, or its directory.
func (db DB) Name() string {
	if db.Dir != nil {
		return db.Dir.Path + string(filepath.Separator)
	}
	return db.Path
}

// Load reads and parses the config file at path, expanding ${VAR} from
// the environment.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(data, path)
}

// Parse parses a config file's contents; source names it in errors.
// ${VAR} is replaced by the environment variable VAR, and $$ by $.
func Parse(data []byte, source string) (*Config, error) {
	return parse(data, source, os.LookupEnv)
}

// parse is Parse with the environment passed in, so tests need not touch
// the process's environment.
func parse(data []byte, source string, lookup func(string) (string, bool)) (*Config, error) {
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil && !errors.Is(err, io.EOF) {
		return nil, yamlError(source, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		if err != nil {
			return nil, yamlError(source, err)
		}
		return nil, fmt.Errorf("%s:%d: a config holds one YAML document; found a second", source, extra.Line)
	}
	d := &decoder{source: source, lookup: lookup}
	c, err := d.config(&doc)
	if err != nil {
		return nil, err
	}
	c.Source = source
	return c, nil
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): `)

// yamlError turns the YAML library's "yaml: line 3: ..." into
// "ferry.yml:3: ...", the shape of every other config error.
func yamlError(source string, err error) error {
	msg := err.Error()
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		return fmt.Errorf("%s:%s: %s", source, m[1], msg[len(m[0]):])
	}
	if len(msg) > 6 && msg[:6] == "yaml: " {
		msg = msg[6:]
	}
	return fmt.Errorf("%s: %s", source, msg)
}
