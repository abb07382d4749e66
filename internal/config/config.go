// Package config owns what a user writes to tell ferry what to do: replica
// URLs (ParseURL) and the YAML config file (Load, Parse).
//
// It promises that whatever it returns has been checked: every path is
// absolute, every replica URL parses, every interval and size is positive
// and defaults are filled in, so no later part of ferry validates them
// again. Every error is one line that names the file and line, or the URL,
// and the field at fault. Credentials are held as Secret and never appear
// in an error or in any printed or encoded form of a Config.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"time"

	"go.yaml.in/yaml/v3"
)

// DefaultPath is where ferry looks for its config when -config is not
// given.
const DefaultPath = "/etc/ferry.yml"

// Defaults for the per-database settings a config may leave out.
const (
	DefaultSyncInterval     = time.Second
	DefaultSnapshotInterval = time.Hour
	DefaultRetention        = 72 * time.Hour
	DefaultMaxSpoolBytes    = 1 << 30
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

	DBs   []DB
	Files []Inbox
}

// DB is one replicated SQLite database.
type DB struct {
	// Path is the absolute path of the database file.
	Path string
	// Replicas lists the targets, at least one; each is tracked
	// independently.
	Replicas []Replica

	// SyncInterval bounds how often change sets go up under load.
	SyncInterval time.Duration
	// SnapshotInterval is how often a snapshot is taken.
	SnapshotInterval time.Duration
	// Retention is how long point-in-time history is kept.
	Retention time.Duration
	// MaxSpoolBytes bounds the local spool for this database.
	MaxSpoolBytes int64

	// Encryption is nil when the replica is stored in plaintext.
	Encryption *Encryption
}

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
}

// Encryption configures client-side encryption of a replica.
type Encryption struct {
	// KeyFile is the absolute path of the key.
	KeyFile string
}

// Inbox is a directory whose closed files are shipped to a replica and
// then removed.
type Inbox struct {
	Path    string
	Replica Replica
}

// DB returns the entry for the database at path.
func (c *Config) DB(path string) (DB, bool) {
	for _, db := range c.DBs {
		if db.Path == path {
			return db, true
		}
	}
	return DB{}, false
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
