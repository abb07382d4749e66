package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferrydb/ferry/internal/config"
	"github.com/ferrydb/ferry/internal/seal"
)

// A config that asks for what ferry does not do is refused before
// anything starts, in one line naming the file, the line and the key.
func TestReplicateRefusesKeysNotBuilt(t *testing.T) {
	dir := t.TempDir()
	const db = "dbs:\n  - path: /data/app.db\n    replicas: [file:///srv/r]\n"
	for _, tc := range []struct{ yaml, want string }{
		{db + "    lease: 1s\n", ":4: dbs[0].lease: 1s is shorter than 3s; a lease must outlast a slow request and the skew between clocks\n"},
		{db + "    retention: 10m\n", ":4: dbs[0].retention: 10m0s is shorter than snapshot-interval 1h0m0s; history is kept from a snapshot, so retention must be at least the snapshot interval\n"},
		{db + "    encryption: { key-file: /nonexistent/key }\n", ":4: dbs[0].encryption.key-file: key file: open /nonexistent/key: no such file or directory\n"},
		{db + "    dir: /data\n", ":4: dbs[0]: give path (one database) or dir (a directory of them), not both\n"},
	} {
		cfg := writeConfig(t, dir, tc.yaml)
		for _, cmd := range []string{"replicate", "status"} {
			wantFailure(t, runFerry(t, cmd, "-config", cfg), 1, "ferry "+cmd+": "+cfg+tc.want)
		}
	}
}

// The config example in the README parses: what users copy must work.
func TestReadmeConfigExampleParses(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(readme), "\n## Configuration\n")
	if !ok {
		t.Fatal("README has no Configuration section")
	}
	_, example, ok := strings.Cut(section, "```yaml\n")
	if !ok {
		t.Fatal("README's Configuration section has no YAML example")
	}
	example, _, _ = strings.Cut(example, "```")
	// The key files it names, made where the test may write.
	keys := t.TempDir()
	for _, name := range []string{"app.key", "app-old.key", "uploads.key"} {
		text, _, err := seal.Generate(time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(keys, name), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	example = strings.ReplaceAll(example, "/etc/ferry/", keys+"/")
	t.Setenv("MINIO_KEY", "key")
	t.Setenv("MINIO_SECRET", "secret")
	c, err := config.Parse([]byte(example), "README.md")
	if err != nil {
		t.Fatal(err)
	}
	if len(c.DBs) != 2 || c.DBs[0].Dir == nil || c.DBs[0].Dir.Path != "/data/tenants" || !c.DBs[0].Dir.Watch {
		t.Fatalf("the README's example starts with a dir entry; it parsed to %+v", c.DBs)
	}
	db := c.DBs[1]
	if db.Replicas[0].Keys == nil || len(db.Replicas[0].Keys.IDs()) != 2 || c.Files[0].Replica.Keys == nil {
		t.Errorf("the README's example encrypts the database (a key and an old one) and the inbox; it parsed to %+v", c)
	}
	if c.HealthzMaxLag != config.DefaultHealthzMaxLag || c.ShutdownTimeout != config.DefaultShutdownTimeout ||
		db.SyncInterval != config.DefaultSyncInterval || db.SnapshotInterval != config.DefaultSnapshotInterval ||
		db.MaxSpoolBytes != config.DefaultMaxSpoolBytes {
		t.Errorf("the README says its example shows the defaults, but it parses to %+v with db %+v", c, db)
	}
}
