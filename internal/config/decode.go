package config

import (
	"fmt"
	"maps"
	"math"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/ferrydb/ferry/internal/seal"
)

// decoder walks the YAML tree by hand rather than unmarshalling into
// tagged structs, so that every error can name the line, the key path
// (dbs[0].sync-interval) and, for an unknown key, the key itself;
// KnownFields(true) reports neither the path nor a suggestion.
//
// ${VAR} is expanded in each scalar value after parsing rather than in the
// raw text before it: line numbers in messages then stay those of the file
// on disk, a comment that mentions ${VAR} is left alone, and a value with
// YAML syntax in it (a password starting with '*' or holding ": ") stays
// one string instead of changing the document's structure.
type decoder struct {
	source string
	lookup func(string) (string, bool)
	// replicaOf maps each replica URL of a database to the database that
	// has it, with the line it was listed at.
	replicaOf map[string]listed
	// keysOf maps each replica URL to the keys its first mention gave.
	keysOf map[string]keysAt
	// stores maps every replica URL, of databases and inboxes alike, to
	// its first mention.
	stores map[string]mention
}

// mention is a replica with the line it was first given at.
type mention struct {
	r    Replica
	line int
}

// listed is where a replica was first named: the key path of its
// database and the line.
type listed struct {
	db   string
	line int
}

type fieldFunc func(n *yaml.Node, path string) error

func (d *decoder) errf(n *yaml.Node, format string, args ...any) error {
	return fmt.Errorf("%s:%d: %s", d.source, n.Line, fmt.Sprintf(format, args...))
}

func resolve(n *yaml.Node) *yaml.Node {
	// An alias may point at another alias; anchors cannot be cycles of
	// aliases alone, so this ends.
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if isNull(n) {
			return "nothing"
		}
		return "a single value"
	}
	return "something else"
}

// mapping decodes the mapping n found at path by calling fields[key] for
// each of its keys, in file order. It returns the key nodes it saw, for
// messages about how keys combine.
func (d *decoder) mapping(n *yaml.Node, path string, fields map[string]fieldFunc) (map[string]*yaml.Node, error) {
	if n.Kind != yaml.MappingNode {
		return nil, d.errf(n, "%s: expected a mapping, got %s", orTop(path), describe(n))
	}
	seen := make(map[string]*yaml.Node)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], resolve(n.Content[i+1])
		if k.Kind != yaml.ScalarNode {
			return nil, d.errf(k, "%s: keys must be plain names", orTop(path))
		}
		if first, dup := seen[k.Value]; dup {
			return nil, d.errf(k, "duplicate key %q%s (first at line %d)", k.Value, in(path), first.Line)
		}
		seen[k.Value] = k
		f, ok := fields[k.Value]
		if !ok {
			return nil, d.errf(k, "unknown key %q%s%s", k.Value, in(path), suggest(k.Value, fields))
		}
		if err := f(v, joinPath(path, k.Value)); err != nil {
			return nil, err
		}
	}
	return seen, nil
}

func orTop(path string) string {
	if path == "" {
		return "config"
	}
	return path
}

func in(path string) string {
	if path == "" {
		return ""
	}
	return " in " + path
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// suggest names the known key closest to a misspelt one.
func suggest(key string, fields map[string]fieldFunc) string {
	best, bestDist := "", 3
	for _, name := range slices.Sorted(maps.Keys(fields)) {
		if dist := editDistance(key, name); dist < bestDist {
			best, bestDist = name, dist
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// list decodes the list n, calling each with every item and its path.
func (d *decoder) list(each fieldFunc) fieldFunc {
	return func(n *yaml.Node, path string) error {
		if isNull(n) {
			return nil
		}
		if n.Kind != yaml.SequenceNode {
			return d.errf(n, "%s: expected a list, got %s", path, describe(n))
		}
		for i, item := range n.Content {
			if err := each(resolve(item), fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
		return nil
	}
}

// scalar returns the value of a scalar node with ${VAR} expanded; a null
// (an empty value or ~) is "".
func (d *decoder) scalar(n *yaml.Node, path string) (string, error) {
	if n.Kind != yaml.ScalarNode {
		return "", d.errf(n, "%s: expected a single value, got %s", path, describe(n))
	}
	if isNull(n) {
		return "", nil
	}
	v, err := expand(n.Value, d.lookup)
	if err != nil {
		return "", d.errf(n, "%s: %v", path, err)
	}
	return v, nil
}

// str decodes a string into dst; check, if not nil, validates a non-empty
// value.
func (d *decoder) str(dst *string, check func(string) error) fieldFunc {
	return func(n *yaml.Node, path string) error {
		v, err := d.scalar(n, path)
		if err != nil {
			return err
		}
		if v != "" && check != nil {
			if err := check(v); err != nil {
				return d.errf(n, "%s: %v", path, err)
			}
		}
		*dst = v
		return nil
	}
}

func (d *decoder) secret(dst *Secret) fieldFunc {
	return func(n *yaml.Node, path string) error {
		v, err := d.scalar(n, path)
		if err != nil {
			return err
		}
		*dst = NewSecret(v)
		return nil
	}
}

// duration decodes a positive duration into dst; an empty value keeps
// the default already there.
func (d *decoder) duration(dst *time.Duration) fieldFunc {
	return func(n *yaml.Node, path string) error {
		v, err := d.scalar(n, path)
		if err != nil || v == "" {
			return err
		}
		dur, err := ParseDuration(v)
		if err != nil {
			return d.errf(n, "%s: %v", path, err)
		}
		if dur <= 0 {
			return d.errf(n, "%s: must be positive, not %s", path, quote(v))
		}
		*dst = dur
		return nil
	}
}

// size decodes a positive byte count into dst; an empty value keeps the
// default already there.
func (d *decoder) size(dst *int64, lo, hi int64) fieldFunc {
	return func(n *yaml.Node, path string) error {
		v, err := d.scalar(n, path)
		if err != nil || v == "" {
			return err
		}
		sz, err := ParseSize(v)
		if err != nil {
			return d.errf(n, "%s: %v", path, err)
		}
		if sz < lo && lo <= 1 {
			return d.errf(n, "%s: must be positive, not %s", path, quote(v))
		}
		if sz < lo || sz > hi {
			return d.errf(n, "%s: %s is out of range; must be %s to %s", path, quote(v), formatSize(lo), formatSize(hi))
		}
		*dst = sz
		return nil
	}
}

func formatSize(n int64) string {
	for _, u := range []struct {
		name string
		size int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n >= u.size && n%u.size == 0 {
			return strconv.FormatInt(n/u.size, 10) + u.name
		}
	}
	return strconv.FormatInt(n, 10) + " bytes"
}

// rate decodes a positive number of events per second into dst; an empty
// value leaves no limit.
func (d *decoder) rate(dst *float64) fieldFunc {
	return func(n *yaml.Node, path string) error {
		v, err := d.scalar(n, path)
		if err != nil || v == "" {
			return err
		}
		f, err := strconv.ParseFloat(v, 64)
		// ParseFloat takes "NaN" and "Inf"; neither is a rate a bucket
		// can refill at.
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f <= 0 {
			return d.errf(n, "%s: must be a positive number, not %s", path, quote(v))
		}
		*dst = f
		return nil
	}
}

func (d *decoder) boolean(dst *bool) fieldFunc {
	return func(n *yaml.Node, path string) error {
		v, err := d.scalar(n, path)
		if err != nil || v == "" {
			return err
		}
		b, err := strconv.ParseBool(v)
		if err != nil {
			return d.errf(n, "%s: must be true or false, not %s", path, quote(v))
		}
		*dst = b
		return nil
	}
}

func absPath(p string) error {
	if !filepath.IsAbs(p) {
		return fmt.Errorf("must be an absolute path, not %s", quote(p))
	}
	return nil
}

// validPattern takes a file-name pattern as filepath.Match reads it; a
// pattern holding a separator could never match a name.
func validPattern(p string) error {
	if _, err := filepath.Match(p, ""); err != nil {
		return fmt.Errorf("%s is not a file-name pattern: %v", quote(p), err)
	}
	if strings.ContainsRune(p, '/') {
		return fmt.Errorf("%s holds a /; a pattern matches file names (use recursive: true for subdirectories)", quote(p))
	}
	return nil
}

func oneOf(values ...string) func(string) error {
	return func(v string) error {
		if !slices.Contains(values, v) {
			return fmt.Errorf("%s is not one of %s", quote(v), strings.Join(values, ", "))
		}
		return nil
	}
}

func hostPort(v string) error {
	_, port, err := net.SplitHostPort(v)
	if err != nil {
		return fmt.Errorf("%s is not host:port", quote(v))
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("%s has an invalid port", quote(v))
	}
	return nil
}

func (d *decoder) config(doc *yaml.Node) (*Config, error) {
	c := &Config{HealthzMaxLag: DefaultHealthzMaxLag, ShutdownTimeout: DefaultShutdownTimeout}
	d.replicaOf = make(map[string]listed)
	d.keysOf = make(map[string]keysAt)
	d.stores = make(map[string]mention)
	if doc.Kind == yaml.DocumentNode && len(doc.Content) > 0 && !isNull(resolve(doc.Content[0])) {
		dbLines := make(map[string]int)
		_, err := d.mapping(resolve(doc.Content[0]), "", map[string]fieldFunc{
			"addr":             d.str(&c.Addr, hostPort),
			"spool":            d.str(&c.Spool, absPath),
			"log-level":        d.str(&c.LogLevel, oneOf("debug", "info", "warn", "error")),
			"log-format":       d.str(&c.LogFormat, oneOf("text", "json")),
			"healthz-max-lag":  d.duration(&c.HealthzMaxLag),
			"shutdown-timeout": d.duration(&c.ShutdownTimeout),
			"dbs": d.list(func(n *yaml.Node, path string) error {
				db, err := d.db(n, path)
				if err != nil {
					return err
				}
				// Two entries for one database would run two
				// replicators on it, each racing the other's
				// checkpoints.
				if first, dup := dbLines[db.Name()]; dup {
					what := "database"
					if db.Dir != nil {
						what = "directory"
					}
					return d.errf(n, "%s: %s %s is already listed at line %d", path, what, quote(db.Name()), first)
				}
				dbLines[db.Name()] = n.Line
				c.DBs = append(c.DBs, db)
				return nil
			}),
			"files": d.list(func(n *yaml.Node, path string) error {
				in, err := d.inbox(n, path)
				if err != nil {
					return err
				}
				c.Files = append(c.Files, in)
				return nil
			}),
		})
		if err != nil {
			return nil, err
		}
	}
	if len(c.DBs) == 0 && len(c.Files) == 0 {
		return nil, fmt.Errorf("%s: nothing to replicate: no dbs and no files", d.source)
	}
	return c, nil
}

func (d *decoder) db(n *yaml.Node, path string) (DB, error) {
	var ring *seal.Ring
	db := DB{
		SyncInterval:     DefaultSyncInterval,
		SnapshotInterval: DefaultSnapshotInterval,
		MaxSpoolBytes:    DefaultMaxSpoolBytes,
		Retention:        DefaultRetention,
		GCInterval:       DefaultGCInterval,
		ScrubInterval:    DefaultScrubInterval,
	}
	dir := Dir{Pattern: DefaultDirPattern}
	dbPath := path
	keys, err := d.mapping(n, path, map[string]fieldFunc{
		"path":      d.str(&db.Path, absPath),
		"dir":       d.str(&dir.Path, absPath),
		"pattern":   d.str(&dir.Pattern, validPattern),
		"recursive": d.boolean(&dir.Recursive),
		"watch":     d.boolean(&dir.Watch),
		"replicas": d.list(func(n *yaml.Node, path string) error {
			r, err := d.replica(n, path)
			if err != nil {
				return err
			}
			url := r.Target.String()
			if first, dup := d.replicaOf[url]; dup {
				if first.db == dbPath {
					return d.errf(n, "%s: replica %s is already listed at line %d", path, quote(url), first.line)
				}
				// A replica's objects sit directly under its URL, so two
				// databases there would read each other's change sets as
				// their own history.
				return d.errf(n, "%s: replica %s is already the replica of %s at line %d; each database needs a replica URL of its own", path, quote(url), first.db, first.line)
			}
			if err := d.oneStore(n, path, r); err != nil {
				return err
			}
			d.replicaOf[url] = listed{db: dbPath, line: n.Line}
			db.Replicas = append(db.Replicas, r)
			return nil
		}),
		"sync-interval":            d.duration(&db.SyncInterval),
		"snapshot-interval":        d.duration(&db.SnapshotInterval),
		"max-spool-bytes":          d.size(&db.MaxSpoolBytes, 1, 1<<62),
		"restore-if-db-not-exists": d.boolean(&db.RestoreIfNotExists),

		"retention":      d.duration(&db.Retention),
		"gc-interval":    d.duration(&db.GCInterval),
		"encryption":     d.encryption(&ring),
		"scrub-interval": d.duration(&db.ScrubInterval),
		"lease":          d.duration(&db.Lease),
	})
	if err != nil {
		return DB{}, err
	}
	switch {
	case db.Path != "" && dir.Path != "":
		return DB{}, d.errf(keys["dir"], "%s: give path (one database) or dir (a directory of them), not both", path)
	case db.Path == "" && dir.Path == "":
		return DB{}, d.errf(n, "%s: missing path (or dir, for a directory of databases)", path)
	case dir.Path != "":
		if k := keys["restore-if-db-not-exists"]; k != nil {
			return DB{}, d.errf(k, "%s.restore-if-db-not-exists: not for a dir entry, which replicates the databases it finds; list a database to restore with path", path)
		}
		if k := keys["lease"]; k != nil {
			return DB{}, d.errf(k, "%s.lease: not for a dir entry: a lease is renewed every ttl/3, which would keep every idle database awake; list a leased database with path", path)
		}
		dir.Path = filepath.Clean(dir.Path)
		db.Dir = &dir
	default:
		for _, k := range []string{"pattern", "recursive", "watch"} {
			if kn := keys[k]; kn != nil {
				return DB{}, d.errf(kn, "%s.%s: only for a dir entry (dir: DIRECTORY); this entry is one database", path, k)
			}
		}
	}
	if len(db.Replicas) == 0 {
		return DB{}, d.errf(n, "%s: no replicas; a db needs at least one", path)
	}
	for i := range db.Replicas {
		db.Replicas[i].Keys = ring
		if err := d.sameKeys(n, path, db.Replicas[i]); err != nil {
			return DB{}, err
		}
	}
	if k := keys["lease"]; k != nil && db.Lease < MinLease {
		return DB{}, d.errf(k, "%s.lease: %s is shorter than %s; a lease must outlast a slow request and the skew between clocks", path, db.Lease, MinLease)
	}
	if db.Retention < db.SnapshotInterval {
		// Retention keeps the snapshot taken at or before its start; with
		// snapshots rarer than that, it could keep nothing older.
		at := n
		if k := keys["retention"]; k != nil {
			at = k
		}
		return DB{}, d.errf(at, "%s.retention: %s is shorter than snapshot-interval %s; history is kept from a snapshot, so retention must be at least the snapshot interval", path, db.Retention, db.SnapshotInterval)
	}
	return db, nil
}

func (d *decoder) inbox(n *yaml.Node, path string) (Inbox, error) {
	var in Inbox
	var ring *seal.Ring
	seenReplica := false
	_, err := d.mapping(n, path, map[string]fieldFunc{
		"inbox":      d.str(&in.Path, absPath),
		"encryption": d.encryption(&ring),
		"replica": func(n *yaml.Node, path string) error {
			r, err := d.replica(n, path)
			if err == nil {
				err = d.oneStore(n, path, r)
			}
			in.Replica, seenReplica = r, err == nil
			return err
		},
	})
	if err != nil {
		return Inbox{}, err
	}
	if in.Path == "" {
		return Inbox{}, d.errf(n, "%s: missing inbox", path)
	}
	if !seenReplica {
		return Inbox{}, d.errf(n, "%s: missing replica", path)
	}
	in.Replica.Keys = ring
	if err := d.sameKeys(n, path, in.Replica); err != nil {
		return Inbox{}, err
	}
	return in, nil
}

// oneStore checks that r has the credentials, part size and rate limits
// of every other mention of its URL. ferry opens one store per replica
// URL, so settings that differ between two mentions would be dropped,
// silently, for one of them; a limit dropped that way would let an inbox
// flood the uplink that a database's entry was written to protect.
func (d *decoder) oneStore(n *yaml.Node, path string, r Replica) error {
	url := r.Target.String()
	first, ok := d.stores[url]
	if !ok {
		d.stores[url] = mention{r: r, line: n.Line}
		return nil
	}
	if !first.r.AccessKeyID.Equal(r.AccessKeyID) || !first.r.SecretAccessKey.Equal(r.SecretAccessKey) || first.r.PartSize != r.PartSize {
		return d.errf(n, "%s: replica %s has other credentials or part-size than at line %d; ferry opens one store per URL, so give them alike", path, quote(url), first.line)
	}
	if first.r.MaxRequestsPerSecond != r.MaxRequestsPerSecond || first.r.MaxUploadBytesPerSecond != r.MaxUploadBytesPerSecond {
		return d.errf(n, "%s: replica %s has other max-requests-per-second or max-upload-bytes-per-second than at line %d; ferry opens one store per URL, so give them alike", path, quote(url), first.line)
	}
	return nil
}

// replica decodes a replica: either a bare URL or a mapping with a url
// and the settings that go with it. Settings given both in the URL and as
// keys must agree, so that no reader has to know which one wins.
func (d *decoder) replica(n *yaml.Node, path string) (Replica, error) {
	if n.Kind == yaml.ScalarNode && !isNull(n) {
		v, err := d.scalar(n, path)
		if err != nil {
			return Replica{}, err
		}
		t, err := ParseURL(v)
		if err != nil {
			return Replica{}, d.errf(n, "%s: %v", path, err)
		}
		return Replica{Target: t}, nil
	}

	var (
		r                     Replica
		rawURL, region, endpt string
		pathStyle             bool
	)
	keys, err := d.mapping(n, path, map[string]fieldFunc{
		"url":               d.str(&rawURL, nil),
		"access-key-id":     d.secret(&r.AccessKeyID),
		"secret-access-key": d.secret(&r.SecretAccessKey),
		"region":            d.str(&region, validRegion),
		"endpoint":          d.str(&endpt, validEndpoint),
		"force-path-style":  d.boolean(&pathStyle),
		"part-size":         d.size(&r.PartSize, MinPartSize, MaxPartSize),

		"max-requests-per-second":     d.rate(&r.MaxRequestsPerSecond),
		"max-upload-bytes-per-second": d.size(&r.MaxUploadBytesPerSecond, 1, 1<<62),
	})
	if err != nil {
		return Replica{}, err
	}
	if rawURL == "" {
		return Replica{}, d.errf(n, "%s: missing url", path)
	}
	t, err := ParseURL(rawURL)
	if err != nil {
		return Replica{}, d.errf(keys["url"], "%s.url: %v", path, err)
	}
	if t.Scheme != "s3" {
		for _, name := range []string{"access-key-id", "secret-access-key", "region", "endpoint", "force-path-style", "part-size"} {
			if k, ok := keys[name]; ok {
				return Replica{}, d.errf(k, "%s.%s: only s3 replicas take %s", path, name, name)
			}
		}
	}
	if region != "" {
		if t.Region != "" && t.Region != region {
			return Replica{}, d.errf(keys["region"], "%s.region: %s conflicts with region=%s in the url", path, quote(region), t.Region)
		}
		t.Region = region
	}
	if endpt != "" {
		if t.Endpoint != "" && t.Endpoint != endpt {
			return Replica{}, d.errf(keys["endpoint"], "%s.endpoint: %s conflicts with endpoint=%s in the url", path, quote(endpt), t.Endpoint)
		}
		t.Endpoint = endpt
	}
	if k, ok := keys["force-path-style"]; ok {
		if t.ForcePathStyle && !pathStyle {
			return Replica{}, d.errf(k, "%s.force-path-style: false conflicts with force-path-style=true in the url", path)
		}
		t.ForcePathStyle = pathStyle
	}
	if r.AccessKeyID.IsZero() != r.SecretAccessKey.IsZero() {
		return Replica{}, d.errf(n, "%s: access-key-id and secret-access-key go together; set both or neither", path)
	}
	r.Target = t
	return r, nil
}

// encryption decodes an encryption block and loads its keys, so that a
// missing, unreadable or loosely protected key file stops the config
// where it is named:
//
//	encryption:
//	  key-file: /etc/ferry/key            # writes and reads
//	  read-only-key-files: [/etc/ferry/old-key]  # reads history of a rotation
func (d *decoder) encryption(dst **seal.Ring) fieldFunc {
	return func(n *yaml.Node, path string) error {
		if isNull(n) {
			return d.errf(n, "%s: empty; give key-file, or remove the key to replicate in plaintext", path)
		}
		var write *seal.Key
		var readOnly []*seal.Key
		load := func(into func(*seal.Key)) fieldFunc {
			return func(n *yaml.Node, path string) error {
				var p string
				if err := d.str(&p, absPath)(n, path); err != nil {
					return err
				}
				if p == "" {
					return d.errf(n, "%s: empty", path)
				}
				k, err := seal.LoadKeyFile(p)
				if err != nil {
					return d.errf(n, "%s: %v", path, err)
				}
				into(k)
				return nil
			}
		}
		_, err := d.mapping(n, path, map[string]fieldFunc{
			"key-file":            load(func(k *seal.Key) { write = k }),
			"read-only-key-files": d.list(load(func(k *seal.Key) { readOnly = append(readOnly, k) })),
		})
		if err != nil {
			return err
		}
		if write == nil {
			return d.errf(n, "%s: missing key-file", path)
		}
		ring, err := seal.NewRing(write, readOnly...)
		if err != nil {
			return d.errf(n, "%s: %v", path, err)
		}
		*dst = ring
		return nil
	}
}

// sameKeys checks that every mention of r's URL has the same keys: ferry
// opens one store per URL, and its keys decide what it writes there.
func (d *decoder) sameKeys(n *yaml.Node, path string, r Replica) error {
	url := r.Target.String()
	ids := "no encryption"
	if r.Keys != nil {
		ids = "keys " + strings.Join(r.Keys.IDs(), ", ")
	}
	if first, ok := d.keysOf[url]; ok && first.ids != ids {
		return d.errf(n, "%s: replica %s has %s here and %s at line %d; one replica has one set of keys", path, quote(url), ids, first.ids, first.line)
	}
	d.keysOf[url] = keysAt{ids: ids, line: n.Line}
	return nil
}

type keysAt struct {
	ids  string
	line int
}
