package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferrydb/ferry/internal/seal"
)

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

const fullConfig = `# the example from the design brief, with credentials
addr: 127.0.0.1:9090
spool: /var/lib/ferry
log-level: debug
log-format: json
healthz-max-lag: 90s
shutdown-timeout: 2m
dbs:
  - path: /data/app.db
    replicas:
      - url: s3://bucket/app?endpoint=http://127.0.0.1:7070
        region: us-east-1
        force-path-style: true
        access-key-id: ${KEY_ID}
        secret-access-key: ${SECRET}
        part-size: 16MiB
      - file:///srv/replica/app
    sync-interval: 250ms
    snapshot-interval: 30m
    max-spool-bytes: 512MiB
  - path: /data/other.db
    replicas:
      - url: file:///srv/replica/other
files:
  - inbox: /var/spool/uploads
    replica: s3://bucket/uploads
`

func TestParseFull(t *testing.T) {
	c, err := parse([]byte(fullConfig), "ferry.yml", env(map[string]string{"KEY_ID": "AKIAEXAMPLE", "SECRET": "s3cr3t/with+chars: and # and *"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.Source != "ferry.yml" || c.Addr != "127.0.0.1:9090" || c.Spool != "/var/lib/ferry" || c.LogLevel != "debug" || c.LogFormat != "json" ||
		c.HealthzMaxLag != 90*time.Second || c.ShutdownTimeout != 2*time.Minute {
		t.Errorf("top level: %+v", c)
	}
	if len(c.DBs) != 2 || len(c.Files) != 1 {
		t.Fatalf("got %d dbs and %d files, want 2 and 1", len(c.DBs), len(c.Files))
	}
	db := c.DBs[0]
	if db.Path != "/data/app.db" || db.SyncInterval != 250*time.Millisecond || db.SnapshotInterval != 30*time.Minute ||
		db.MaxSpoolBytes != 512<<20 {
		t.Errorf("db[0]: %+v", db)
	}
	r := db.Replicas[0]
	want := Target{Scheme: "s3", Bucket: "bucket", Prefix: "app", Endpoint: "http://127.0.0.1:7070", Region: "us-east-1", ForcePathStyle: true}
	if r.Target != want {
		t.Errorf("replica[0] target = %+v, want %+v", r.Target, want)
	}
	if r.AccessKeyID.Reveal() != "AKIAEXAMPLE" || r.SecretAccessKey.Reveal() != "s3cr3t/with+chars: and # and *" || r.PartSize != 16<<20 {
		t.Errorf("replica[0] credentials or part size wrong (part size %d)", r.PartSize)
	}
	if got := db.Replicas[1].Target.String(); got != "file:///srv/replica/app" {
		t.Errorf("replica[1] = %s", got)
	}
	other, ok := c.DB("/data/other.db")
	if !ok || other.SyncInterval != DefaultSyncInterval || other.SnapshotInterval != DefaultSnapshotInterval ||
		other.MaxSpoolBytes != DefaultMaxSpoolBytes {
		t.Errorf("db[1] defaults: %+v", other)
	}
	if in := c.Files[0]; in.Path != "/var/spool/uploads" || in.Replica.Target.String() != "s3://bucket/uploads" {
		t.Errorf("files[0]: %+v", in)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ferry.yml")
	if err := os.WriteFile(path, []byte("dbs:\n  - path: /data/app.db\n    replicas: [file:///srv/r]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if c.Source != path || len(c.DBs) != 1 {
		t.Errorf("Load = %+v", c)
	}

	_, err = Load(filepath.Join(dir, "missing.yml"))
	if err == nil || !strings.Contains(err.Error(), "missing.yml") {
		t.Errorf("Load of a missing file: %v", err)
	}

	bad := filepath.Join(dir, "bad.yml")
	if err := os.WriteFile(bad, []byte("dbs:\n  - path: /data/app.db\n    replcas: [file:///srv/r]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Load(bad)
	if want := bad + `:3: unknown key "replcas" in dbs[0] (did you mean "replicas"?)`; err == nil || err.Error() != want {
		t.Errorf("Load(bad) = %v, want %s", err, want)
	}
}

func TestParseErrors(t *testing.T) {
	const db = "dbs:\n  - path: /data/app.db\n    replicas: [file:///srv/r]\n"
	tests := []struct {
		name, yaml, want string
	}{
		{"unknown top key", "adr: x\n" + db, `ferry.yml:1: unknown key "adr" (did you mean "addr"?)`},
		{"unknown db key", "\n\ndbs:\n  - path: /data/app.db\n\n    replicas: [file:///srv/r]\n    replcas: []\n", `ferry.yml:7: unknown key "replcas" in dbs[0] (did you mean "replicas"?)`},
		{"unknown key far from any", db + "zzzzzz: 1\n", `ferry.yml:4: unknown key "zzzzzz"`},
		{"unknown replica key", "dbs:\n  - path: /a.db\n    replicas:\n      - url: file:///r\n        secret: x\n", `ferry.yml:5: unknown key "secret" in dbs[0].replicas[0]`},
		{"duplicate key", "dbs:\n  - path: /a.db\n    path: /b.db\n", `ferry.yml:3: duplicate key "path" in dbs[0] (first at line 2)`},
		{"bad duration", db + "    sync-interval: 1x\n", `ferry.yml:4: dbs[0].sync-interval: invalid duration "1x"`},
		{"zero duration", db + "    sync-interval: 0s\n", `ferry.yml:4: dbs[0].sync-interval: must be positive, not "0s"`},
		{"negative duration", db + "    snapshot-interval: -1h\n", `ferry.yml:4: dbs[0].snapshot-interval: must be positive, not "-1h"`},
		{"bad size", db + "    max-spool-bytes: 1GB!\n", `ferry.yml:4: dbs[0].max-spool-bytes: invalid size "1GB!"; use bytes or a unit such as 512MiB or 1GiB`},
		{"zero size", db + "    max-spool-bytes: 0\n", `ferry.yml:4: dbs[0].max-spool-bytes: must be positive, not "0"`},
		{"relative db path", "dbs:\n  - path: data/app.db\n    replicas: [file:///r]\n", `ferry.yml:2: dbs[0].path: must be an absolute path, not "data/app.db"`},
		{"missing db path", "dbs:\n  - replicas: [file:///r]\n", `ferry.yml:2: dbs[0]: missing path`},
		{"no replicas", "dbs:\n  - path: /a.db\n", `ferry.yml:2: dbs[0]: no replicas; a db needs at least one`},
		{"empty replicas", "dbs:\n  - path: /a.db\n    replicas: []\n", `ferry.yml:2: dbs[0]: no replicas`},
		{"bad replica url", "dbs:\n  - path: /a.db\n    replicas:\n      - url: s3://\n", `ferry.yml:4: dbs[0].replicas[0].url: replica URL "s3://": missing bucket name`},
		{"bad bare replica url", "dbs:\n  - path: /a.db\n    replicas:\n      - ftp://x\n", `ferry.yml:4: dbs[0].replicas[0]: unknown scheme "ftp" in replica URL "ftp://x"`},
		{"missing replica url", "dbs:\n  - path: /a.db\n    replicas:\n      - region: x\n", `ferry.yml:4: dbs[0].replicas[0]: missing url`},
		{"region on file", "dbs:\n  - path: /a.db\n    replicas:\n      - url: file:///r\n        region: x\n", `ferry.yml:5: dbs[0].replicas[0].region: only s3 replicas take region`},
		{"region conflict", "dbs:\n  - path: /a.db\n    replicas:\n      - url: s3://bkt?region=a\n        region: b\n", `ferry.yml:5: dbs[0].replicas[0].region: "b" conflicts with region=a in the url`},
		{"half credentials", "dbs:\n  - path: /a.db\n    replicas:\n      - url: s3://bkt\n        access-key-id: k\n", `ferry.yml:4: dbs[0].replicas[0]: access-key-id and secret-access-key go together`},
		{"bad endpoint key", "dbs:\n  - path: /a.db\n    replicas:\n      - url: s3://bkt\n        endpoint: localhost:9000\n", `ferry.yml:5: dbs[0].replicas[0].endpoint: endpoint must be an http:// or https:// URL`},
		{"bad bool", "dbs:\n  - path: /a.db\n    replicas:\n      - url: s3://bkt\n        force-path-style: yes\n", `ferry.yml:5: dbs[0].replicas[0].force-path-style: must be true or false, not "yes"`},
		{"small part size", "dbs:\n  - path: /a.db\n    replicas:\n      - url: s3://bkt\n        part-size: 1MiB\n", `ferry.yml:5: dbs[0].replicas[0].part-size: "1MiB" is out of range; must be 5MiB to 5GiB`},
		{"duplicate replica", "dbs:\n  - path: /a.db\n    replicas:\n      - file:///r\n      - file:///r/\n", `ferry.yml:5: dbs[0].replicas[1]: replica "file:///r" is already listed at line 4`},
		{"duplicate db", db + "  - path: /data/app.db\n    replicas: [file:///x]\n", `ferry.yml:4: dbs[1]: database "/data/app.db" is already listed at line 2`},
		{"zero healthz-max-lag", "healthz-max-lag: 0s\n" + db, `ferry.yml:1: healthz-max-lag: must be positive, not "0s"`},
		{"bad healthz-max-lag", "healthz-max-lag: soon\n" + db, `ferry.yml:1: healthz-max-lag: invalid duration "soon"`},
		{"negative shutdown-timeout", "shutdown-timeout: -30s\n" + db, `ferry.yml:1: shutdown-timeout: must be positive, not "-30s"`},
		{"shutdown-timeout a list", "shutdown-timeout: [1s]\n" + db, `ferry.yml:1: shutdown-timeout: expected a single value, got a list`},
		{"one store, two part sizes", "dbs:\n  - path: /a.db\n    replicas:\n      - url: s3://bkt/a\n        part-size: 16MiB\nfiles:\n  - inbox: /in\n    replica: s3://bkt/a\n",
			`ferry.yml:8: files[0].replica: replica "s3://bkt/a" has other credentials or part-size than at line 4; ferry opens one store per URL, so give them alike`},
		{"one store, two credentials", "files:\n  - inbox: /in\n    replica: {url: s3://bkt/u, access-key-id: a, secret-access-key: b}\n  - inbox: /in2\n    replica: {url: s3://bkt/u, access-key-id: a, secret-access-key: c}\n",
			`ferry.yml:5: files[1].replica: replica "s3://bkt/u" has other credentials or part-size than at line 3`},
		{"replica shared by two dbs", db + "  - path: /data/other.db\n    replicas:\n      - file:///srv/r/\n",
			`ferry.yml:6: dbs[1].replicas[0]: replica "file:///srv/r" is already the replica of dbs[0] at line 3; each database needs a replica URL of its own`},
		{"dbs not a list", "dbs: /data/app.db\n", `ferry.yml:1: dbs: expected a list, got a single value`},
		{"db not a mapping", "dbs:\n  - /data/app.db\n", `ferry.yml:2: dbs[0]: expected a mapping, got a single value`},
		{"path a list", "dbs:\n  - path: [a]\n", `ferry.yml:2: dbs[0].path: expected a single value, got a list`},
		{"top level not a mapping", "- a\n", `ferry.yml:1: config: expected a mapping, got a list`},
		{"empty", "", `ferry.yml: nothing to replicate: no dbs and no files`},
		{"only comments", "# nothing\n", `ferry.yml: nothing to replicate`},
		{"bad log level", "log-level: loud\n" + db, `ferry.yml:1: log-level: "loud" is not one of debug, info, warn, error`},
		{"bad log format", "log-format: xml\n" + db, `ferry.yml:1: log-format: "xml" is not one of text, json`},
		{"bad addr", "addr: 9090\n" + db, `ferry.yml:1: addr: "9090" is not host:port`},
		{"relative spool", "spool: spool\n" + db, `ferry.yml:1: spool: must be an absolute path`},
		{"inbox without replica", "files:\n  - inbox: /in\n", `ferry.yml:2: files[0]: missing replica`},
		{"inbox relative", "files:\n  - inbox: in\n    replica: file:///r\n", `ferry.yml:2: files[0].inbox: must be an absolute path`},
		{"yaml syntax", "dbs:\n  - path: /a\n    r: [a, b\n", `ferry.yml:2: did not find expected ',' or ']'`},
		{"tab indent", "dbs:\n\t- path: /a\n", `ferry.yml:2: found character that cannot start any token`},
		{"two documents", db + "---\naddr: x:1\n", `ferry.yml:4: a config holds one YAML document; found a second`},
		{"unset variable", "dbs:\n  - path: ${DB_DIR}/app.db\n    replicas: [file:///r]\n", `ferry.yml:2: dbs[0].path: environment variable DB_DIR is not set`},
		{"unset variable in secret", "dbs:\n  - path: /a.db\n    replicas:\n      - url: s3://bkt\n        access-key-id: k\n        secret-access-key: ${AWS_SECRET}\n", `ferry.yml:6: dbs[0].replicas[0].secret-access-key: environment variable AWS_SECRET is not set`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parse([]byte(tt.yaml), "ferry.yml", env(nil))
			if err == nil {
				t.Fatalf("parse succeeded: %+v\nwant error: %s", c, tt.want)
			}
			if !strings.HasPrefix(err.Error(), tt.want) {
				t.Errorf("error\n got: %s\nwant: %s", err, tt.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is more than one line: %q", err)
			}
		})
	}
}

func TestParseEnvExpansion(t *testing.T) {
	yml := `
# a comment naming ${UNSET_IN_COMMENT} is not expanded
dbs:
  - path: ${DATA}/app.db
    replicas:
      - url: s3://${BUCKET}/app?region=${REGION}
        access-key-id: ${KEY}
        secret-access-key: "$${literal}${SECRET}"
    sync-interval: ${INTERVAL}
    max-spool-bytes: ${SPOOL_MAX}
`
	c, err := parse([]byte(yml), "ferry.yml", env(map[string]string{
		"DATA": "/srv/data", "BUCKET": "my-bucket", "REGION": "eu-west-1",
		"KEY": "AKIA", "SECRET": "*not: yaml", "INTERVAL": "3d", "SPOOL_MAX": "2GiB",
	}))
	if err != nil {
		t.Fatal(err)
	}
	db := c.DBs[0]
	if db.Path != "/srv/data/app.db" || db.SyncInterval != 72*time.Hour || db.MaxSpoolBytes != 2<<30 {
		t.Errorf("db: %+v", db)
	}
	r := db.Replicas[0]
	if r.Target.String() != "s3://my-bucket/app?region=eu-west-1" {
		t.Errorf("target: %s", r.Target)
	}
	if r.SecretAccessKey.Reveal() != "${literal}*not: yaml" {
		t.Errorf("secret expanded wrongly (length %d)", len(r.SecretAccessKey.Reveal()))
	}
}

// Parse reads the real environment.
func TestParseUsesEnvironment(t *testing.T) {
	t.Setenv("FERRY_TEST_DB_DIR", "/from/env")
	c, err := Parse([]byte("dbs:\n  - path: ${FERRY_TEST_DB_DIR}/app.db\n    replicas: [file:///r]\n"), "ferry.yml")
	if err != nil {
		t.Fatal(err)
	}
	if c.DBs[0].Path != "/from/env/app.db" {
		t.Errorf("path = %s", c.DBs[0].Path)
	}
}

func TestParseAliasesAndNulls(t *testing.T) {
	yml := `
common: &dst
  - file:///srv/r
dbs:
  - path: /a.db
    replicas: *dst
    sync-interval:
`
	_, err := parse([]byte(yml), "ferry.yml", env(nil))
	if err == nil || !strings.Contains(err.Error(), `unknown key "common"`) {
		t.Fatalf("want unknown key error, got %v", err)
	}
	yml = `
dbs:
  - &db
    path: /a.db
    replicas: [file:///srv/r]
    sync-interval:
    max-spool-bytes: ~
shutdown-timeout:
`
	c, err := parse([]byte(yml), "ferry.yml", env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c.DBs[0].SyncInterval != DefaultSyncInterval || c.DBs[0].MaxSpoolBytes != DefaultMaxSpoolBytes || c.ShutdownTimeout != DefaultShutdownTimeout {
		t.Errorf("null values should keep defaults: %+v", c.DBs[0])
	}
	// An alias to an enclosing node must end in an error, not a loop.
	_, err = parse([]byte("dbs: &a\n  - path: /a.db\n    replicas: *a\n"), "ferry.yml", env(nil))
	if err == nil {
		t.Fatal("self-referencing alias accepted")
	}
}

// A config that leaves out the daemon's own settings gets the defaults
// the daemon documents.
func TestParseDaemonDefaults(t *testing.T) {
	c, err := parse([]byte("dbs:\n  - path: /a.db\n    replicas: [file:///r]\n"), "ferry.yml", env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c.HealthzMaxLag != DefaultHealthzMaxLag || c.ShutdownTimeout != DefaultShutdownTimeout {
		t.Errorf("healthz-max-lag %v, shutdown-timeout %v; want %v and %v", c.HealthzMaxLag, c.ShutdownTimeout, DefaultHealthzMaxLag, DefaultShutdownTimeout)
	}
	if DefaultHealthzMaxLag != 5*time.Minute || DefaultShutdownTimeout != 30*time.Second {
		t.Errorf("defaults %v and %v differ from the documented 5m and 30s", DefaultHealthzMaxLag, DefaultShutdownTimeout)
	}
	c, err = parse([]byte("healthz-max-lag: 1d\nshutdown-timeout: 1500ms\nfiles:\n  - inbox: /in\n    replica: file:///r\n"), "ferry.yml", env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c.HealthzMaxLag != 24*time.Hour || c.ShutdownTimeout != 1500*time.Millisecond {
		t.Errorf("healthz-max-lag %v, shutdown-timeout %v; want 24h and 1.5s", c.HealthzMaxLag, c.ShutdownTimeout)
	}
}

// A dir entry stands for the databases of its directory: each gets the
// entry's settings and a replica URL of its own under every replica.
func TestParseDirEntries(t *testing.T) {
	c, err := parse([]byte("dbs:\n  - dir: /srv/tenants\n    recursive: true\n    watch: true\n    sync-interval: 2s\n    replicas: [s3://bkt/fleet, file:///backup/fleet]\n  - path: /srv/other.db\n    replicas: [file:///backup/other]\n"), "ferry.yml", env(nil))
	if err != nil {
		t.Fatal(err)
	}
	d := c.DBs[0]
	if d.Path != "" || d.Dir == nil || *d.Dir != (Dir{Path: "/srv/tenants", Pattern: "*.db", Recursive: true, Watch: true}) {
		t.Fatalf("dir entry parsed as %+v (dir %+v)", d, d.Dir)
	}
	for _, tt := range []struct {
		path, rel string
		ok        bool
	}{
		{"/srv/tenants/a.db", "a.db", true},
		{"/srv/tenants/eu/b.db", "eu/b.db", true},
		{"/srv/tenants/.a.db-ferry/x.db", "", false},
		{"/srv/tenants/a.db-wal", "", false},
		{"/srv/tenants", "", false},
		{"/srv/tenantsx/a.db", "", false},
		{"/srv/other.db", "", false},
	} {
		rel, ok := d.Dir.Takes(tt.path)
		if rel != tt.rel || ok != tt.ok {
			t.Errorf("Takes(%s) = %q, %v; want %q, %v", tt.path, rel, ok, tt.rel, tt.ok)
		}
	}
	one, ok := c.DB("/srv/tenants/eu/b.db")
	if !ok || one.Path != "/srv/tenants/eu/b.db" || one.Dir != nil || one.SyncInterval != 2*time.Second {
		t.Fatalf("DB(eu/b.db) = %+v, %v", one, ok)
	}
	if got := one.Replicas[0].Target.String(); got != "s3://bkt/fleet/eu/b.db" {
		t.Errorf("first replica %s", got)
	}
	if got := one.Replicas[1].Target.String(); got != "file:///backup/fleet/eu/b.db" {
		t.Errorf("second replica %s", got)
	}
	if d.Replicas[0].Target.String() != "s3://bkt/fleet" {
		t.Errorf("Under changed the entry's own replicas: %s", d.Replicas[0].Target)
	}
	if _, ok := c.DB("/srv/tenants/eu/b.txt"); ok {
		t.Error("DB found a file the pattern does not take")
	}
}

func TestParseDirEntryErrors(t *testing.T) {
	const dir = "dbs:\n  - dir: /data/tenants\n    replicas: [file:///srv/r]\n"
	const db = "dbs:\n  - path: /data/app.db\n    replicas: [file:///srv/r]\n"
	tests := []struct {
		name, yaml, want string
	}{
		{"both", dir + "    path: /data/a.db\n", "ferry.yml:2: dbs[0]: give path (one database) or dir (a directory of them), not both"},
		{"neither", "dbs:\n  - replicas: [file:///srv/r]\n", "ferry.yml:2: dbs[0]: missing path (or dir, for a directory of databases)"},
		{"relative", "dbs:\n  - dir: data\n    replicas: [file:///srv/r]\n", `ferry.yml:2: dbs[0].dir: must be an absolute path, not "data"`},
		{"bad pattern", dir + "    pattern: \"[a\"\n", `ferry.yml:4: dbs[0].pattern: "[a" is not a file-name pattern: syntax error in pattern`},
		{"pattern with slash", dir + "    pattern: \"eu/*.db\"\n", `ferry.yml:4: dbs[0].pattern: "eu/*.db" holds a /; a pattern matches file names`},
		{"pattern on a db", db + "    pattern: \"*.db\"\n", "ferry.yml:4: dbs[0].pattern: only for a dir entry (dir: DIRECTORY); this entry is one database"},
		{"watch on a db", db + "    watch: true\n", "ferry.yml:4: dbs[0].watch: only for a dir entry"},
		{"watch not bool", dir + "    watch: often\n", `ferry.yml:4: dbs[0].watch: must be true or false, not "often"`},
		{"lease", dir + "    lease: 10s\n", "ferry.yml:4: dbs[0].lease: not for a dir entry"},
		{"restore", dir + "    restore-if-db-not-exists: true\n", "ferry.yml:4: dbs[0].restore-if-db-not-exists: not for a dir entry"},
		{"twice", dir + "  - dir: /data/tenants/\n    replicas: [file:///srv/q]\n", `ferry.yml:4: dbs[1]: directory "/data/tenants/" is already listed at line 2`},
		{"misspelt", dir + "    recursve: true\n", `ferry.yml:4: unknown key "recursve" in dbs[0] (did you mean "recursive"?)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parse([]byte(tt.yaml), "ferry.yml", env(nil))
			if err == nil {
				t.Fatalf("parse succeeded: %+v\nwant error: %s", c, tt.want)
			}
			if !strings.HasPrefix(err.Error(), tt.want) {
				t.Errorf("error\n got: %s\nwant: %s", err, tt.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is more than one line: %q", err)
			}
		})
	}
}

// Two inboxes may ship to one replica, given alike.
func TestParseOneStoreForTwoInboxes(t *testing.T) {
	yml := "files:\n  - inbox: /in\n    replica: {url: s3://bkt/u, part-size: 8MiB}\n  - inbox: /in2\n    replica: {url: s3://bkt/u, part-size: 8MiB}\n"
	c, err := parse([]byte(yml), "ferry.yml", env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Files) != 2 || c.Files[1].Replica.PartSize != 8<<20 {
		t.Errorf("files: %+v", c.Files)
	}
}

func TestParseRestoreIfDBNotExists(t *testing.T) {
	base := "dbs:\n  - path: /data/app.db\n    replicas:\n      - url: file:///r\n"
	for _, c := range []struct {
		yaml string
		want bool
	}{
		{base, false},
		{base + "    restore-if-db-not-exists: true\n", true},
		{base + "    restore-if-db-not-exists: false\n", false},
	} {
		cfg, err := parse([]byte(c.yaml), "ferry.yml", func(string) (string, bool) { return "", false })
		if err != nil {
			t.Fatalf("%q: %v", c.yaml, err)
		}
		if got := cfg.DBs[0].RestoreIfNotExists; got != c.want {
			t.Errorf("%q: RestoreIfNotExists %v, want %v", c.yaml, got, c.want)
		}
	}
	_, err := parse([]byte(base+"    restore-if-db-not-exists: maybe\n"), "ferry.yml", func(string) (string, bool) { return "", false })
	if err == nil || !strings.Contains(err.Error(), "ferry.yml:5: dbs[0].restore-if-db-not-exists") {
		t.Errorf("a bad value: %v", err)
	}
}

func TestParseRetention(t *testing.T) {
	base := "dbs:\n  - path: /data/app.db\n    replicas:\n      - url: file:///r\n"
	env := func(string) (string, bool) { return "", false }
	cfg, err := parse([]byte(base), "ferry.yml", env)
	if err != nil {
		t.Fatal(err)
	}
	if db := cfg.DBs[0]; db.Retention != DefaultRetention || db.GCInterval != DefaultGCInterval {
		t.Fatalf("defaults: retention %v, gc-interval %v", db.Retention, db.GCInterval)
	}
	cfg, err = parse([]byte(base+"    snapshot-interval: 10m\n    retention: 24h\n    gc-interval: 15m\n"), "ferry.yml", env)
	if err != nil {
		t.Fatal(err)
	}
	if db := cfg.DBs[0]; db.Retention != 24*time.Hour || db.GCInterval != 15*time.Minute {
		t.Fatalf("retention %v, gc-interval %v", db.Retention, db.GCInterval)
	}
	_, err = parse([]byte(base+"    retention: 30m\n"), "ferry.yml", env)
	want := "ferry.yml:5: dbs[0].retention: 30m0s is shorter than snapshot-interval 1h0m0s; history is kept from a snapshot, so retention must be at least the snapshot interval"
	if err == nil || err.Error() != want {
		t.Fatalf("retention under the snapshot interval:\n got: %v\nwant: %s", err, want)
	}
}

// An encryption block loads its keys when the config is read: a key file
// that is missing, loose or not a key stops the config at its line.
func TestParseEncryption(t *testing.T) {
	dir := t.TempDir()
	keyFile := func(name string, mode os.FileMode) string {
		text, _, err := seal.Generate(time.Now())
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(p, mode)
		return p
	}
	newKey, oldKey, loose := keyFile("new", 0o600), keyFile("old", 0o400), keyFile("loose", 0o644)
	const db = "dbs:\n  - path: /data/app.db\n    replicas: [file:///srv/r, file:///srv/r2]\n"
	c, err := parse([]byte(db+"    encryption:\n      key-file: "+newKey+"\n      read-only-key-files: ["+oldKey+"]\n"+
		"files:\n  - inbox: /in\n    replica: file:///srv/files\n"), "ferry.yml", env(nil))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range c.DBs[0].Replicas {
		if r.Keys == nil || len(r.Keys.IDs()) != 2 || r.Keys.Write() == nil {
			t.Fatalf("replica %s: keys %v; want a write key and a read-only one", r.Target, r.Keys)
		}
	}
	if c.Files[0].Replica.Keys != nil {
		t.Fatal("an inbox without an encryption block got keys")
	}

	for _, tt := range []struct{ name, yaml, want string }{
		{"missing file", db + "    encryption: { key-file: " + dir + "/none }\n", "ferry.yml:4: dbs[0].encryption.key-file: key file: open " + dir + "/none: no such file"},
		{"loose", db + "    encryption:\n      key-file: " + loose + "\n", "ferry.yml:5: dbs[0].encryption.key-file: key file " + loose + ": mode 0644 lets others read it; run chmod 600"},
		{"null", db + "    encryption: ~\n", "ferry.yml:4: dbs[0].encryption: empty; give key-file"},
		{"no key-file", db + "    encryption: { read-only-key-files: [" + oldKey + "] }\n", "ferry.yml:4: dbs[0].encryption: missing key-file"},
		{"relative", db + "    encryption: { key-file: key }\n", "ferry.yml:4: dbs[0].encryption.key-file: must be an absolute path"},
		{"twice", db + "    encryption: { key-file: " + newKey + ", read-only-key-files: [" + newKey + "] }\n", "ferry.yml:4: dbs[0].encryption: key "},
		{"misspelt", db + "    encryption: { keyfile: " + newKey + " }\n", `ferry.yml:4: unknown key "keyfile" in dbs[0].encryption`},
		{"inbox on the db's replica without its keys", db + "    encryption: { key-file: " + newKey + " }\nfiles:\n  - inbox: /in\n    replica: file:///srv/r2\n",
			`ferry.yml:6: files[0]: replica "file:///srv/r2" has no encryption here and keys `},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parse([]byte(tt.yaml), "ferry.yml", env(nil))
			if err == nil {
				t.Fatalf("parse succeeded: %+v\nwant error: %s", c, tt.want)
			}
			if !strings.HasPrefix(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("error\n got: %s\nwant: %s", err, tt.want)
			}
		})
	}
}
