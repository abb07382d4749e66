package main

import (
	"database/sql"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// makeDB creates a SQLite database at path with one table, in WAL mode
// or with a rollback journal, and closes it: the listing must find it
// from its header alone, with no connection of the test's left to lose
// its locks when the command closes the file.
func makeDB(t *testing.T, path string, wal bool) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	mode := "DELETE"
	if wal {
		mode = "WAL"
	}
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode("+mode+")")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("CREATE TABLE t (x); INSERT INTO t VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

// fleetDir lays out a directory as an application with many databases
// would: WAL databases at the top and in a subdirectory, one in a hidden
// directory (where ferry keeps its spools), and files the pattern takes
// that are no WAL database. It returns the directory and the relative
// paths of the databases a recursive dir entry replicates.
func fleetDir(t *testing.T) (dir string, want []string) {
	dir = filepath.Join(t.TempDir(), "tenants")
	makeDB(t, filepath.Join(dir, "a.db"), true)
	makeDB(t, filepath.Join(dir, "sub", "b.db"), true)
	makeDB(t, filepath.Join(dir, ".hidden", "c.db"), true)
	makeDB(t, filepath.Join(dir, "plain.db"), false)
	for name, body := range map[string]string{
		"notes.db":   strings.Repeat("notes, not a database; ", 10),
		"readme.txt": "not taken by the pattern",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir, []string{"a.db", "sub/b.db"}
}

type databasesJSON struct {
	DBs []struct {
		DB       string   `json:"db"`
		Replicas []string `json:"replicas"`
		State    string   `json:"state"`
	} `json:"dbs"`
	Skipped []struct {
		Path string `json:"path"`
		Why  string `json:"why"`
	} `json:"skipped"`
}

func databasesJSONOf(t *testing.T, r result) databasesJSON {
	t.Helper()
	var out databasesJSON
	if r.code != 0 {
		t.Fatalf("databases -json: exit %d, stderr %q", r.code, r.stderr)
	}
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		t.Fatalf("databases -json is not JSON: %v\n%s", err, r.stdout)
	}
	return out
}

// TestDatabasesListsWhatAConfigReplicates checks that the listing holds
// exactly the WAL databases of a dir entry, with each replica URL joined
// with the database's relative path (query kept), after the path
// entries; that the files the pattern takes but that are no WAL database
// are named with the reason, and the rest not at all; and that with no
// daemon running every state is "-".
func TestDatabasesListsWhatAConfigReplicates(t *testing.T) {
	dir, rels := fleetDir(t)
	other := filepath.Join(filepath.Dir(dir), "other.db")
	makeDB(t, other, true)
	const s3 = "s3://bkt/fleet?endpoint=http://127.0.0.1:9&force-path-style=true"
	fileRoot := filepath.Join(filepath.Dir(dir), "r&1")
	cfg := writeConfig(t, filepath.Dir(dir), "dbs:\n"+
		"  - path: "+other+"\n    replicas: [file://"+filepath.Join(filepath.Dir(dir), "other-replica")+"]\n"+
		"  - dir: "+dir+"\n    recursive: true\n    replicas:\n      - file://"+fileRoot+"\n      - "+s3+"\n")

	wantDBs := []string{other}
	wantReplicas := map[string][]string{other: {"file://" + filepath.Join(filepath.Dir(dir), "other-replica")}}
	for _, rel := range rels {
		p := filepath.Join(dir, rel)
		wantDBs = append(wantDBs, p)
		wantReplicas[p] = []string{"file://" + fileRoot + "/" + rel, "s3://bkt/fleet/" + rel + "?endpoint=http://127.0.0.1:9&force-path-style=true"}
	}
	wantSkipped := map[string]string{
		filepath.Join(dir, "notes.db"): "not a SQLite database",
		filepath.Join(dir, "plain.db"): "not in WAL mode",
	}

	r := runFerry(t, "databases", "-config", cfg)
	if r.code != 0 {
		t.Fatalf("databases: exit %d, stderr %q", r.code, r.stderr)
	}
	lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	if got := strings.Fields(lines[0]); !slices.Equal(got, []string{"DB", "REPLICAS", "STATE"}) {
		t.Errorf("header %q", lines[0])
	}
	var gotDBs []string
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		if len(f) != 3 {
			t.Fatalf("line %q has %d columns, want 3", l, len(f))
		}
		gotDBs = append(gotDBs, f[0])
		if want := strings.Join(wantReplicas[f[0]], ","); f[1] != want {
			t.Errorf("%s: replicas %s, want %s", f[0], f[1], want)
		}
		if f[2] != "-" {
			t.Errorf("%s: state %q with no daemon running, want -", f[0], f[2])
		}
	}
	if !slices.Equal(gotDBs, wantDBs) {
		t.Errorf("listed %v, want %v", gotDBs, wantDBs)
	}
	for path, why := range wantSkipped {
		if want := "ferry databases: skipped " + path + ": " + why + "\n"; !strings.Contains(r.stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
		}
	}
	if n := strings.Count(r.stderr, "\n"); n != len(wantSkipped) {
		t.Errorf("stderr has %d lines, want one per skipped file:\n%s", n, r.stderr)
	}

	out := databasesJSONOf(t, runFerry(t, "databases", "-json", "-config", cfg))
	if len(out.DBs) != len(wantDBs) {
		t.Fatalf("-json lists %d databases, want %d: %+v", len(out.DBs), len(wantDBs), out.DBs)
	}
	for i, db := range out.DBs {
		if db.DB != wantDBs[i] || !slices.Equal(db.Replicas, wantReplicas[db.DB]) || db.State != "-" {
			t.Errorf("-json dbs[%d] = %+v, want %s with %v and state -", i, db, wantDBs[i], wantReplicas[wantDBs[i]])
		}
	}
	if len(out.Skipped) != len(wantSkipped) {
		t.Errorf("-json skipped %+v, want %v", out.Skipped, wantSkipped)
	}
	for _, s := range out.Skipped {
		if wantSkipped[s.Path] != s.Why {
			t.Errorf("-json skipped %s: %q, want %q", s.Path, s.Why, wantSkipped[s.Path])
		}
	}
}

// TestDatabasesJSONShape checks the style every JSON output of ferry
// keeps: snake_case keys, lists as lists even when empty, URLs as written.
func TestDatabasesJSONShape(t *testing.T) {
	dir := t.TempDir()
	cfg := writeConfig(t, dir, "dbs:\n  - dir: "+dir+"\n    replicas: [\"s3://bkt/x?endpoint=http://127.0.0.1:9&force-path-style=true\"]\n")
	r := runFerry(t, "databases", "-json", "-config", cfg)
	var raw map[string]any
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &raw) != nil {
		t.Fatalf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	for _, k := range []string{"dbs", "skipped"} {
		if l, ok := raw[k].([]any); !ok || len(l) != 0 {
			t.Errorf("%s is %v, want an empty list", k, raw[k])
		}
	}

	makeDB(t, filepath.Join(dir, "a.db"), true)
	r = runFerry(t, "databases", "-json", "-config", cfg)
	if !strings.Contains(r.stdout, `"s3://bkt/x/a.db?endpoint=http://127.0.0.1:9&force-path-style=true"`) {
		t.Errorf("-json does not hold the URL as written:\n%s", r.stdout)
	}
	for _, k := range []string{`"db"`, `"replicas"`, `"state"`} {
		if !strings.Contains(r.stdout, k) {
			t.Errorf("-json lacks the key %s:\n%s", k, r.stdout)
		}
	}
}

// TestDatabasesShowsTheDaemonsState runs the real daemon on a config with
// a dir entry and a path entry, and checks that the listing reports each
// database's state from it, through the directory's control socket and
// the database's own.
func TestDatabasesShowsTheDaemonsState(t *testing.T) {
	bin := ferryBinary(t)
	dir, rels := fleetDir(t)
	root := filepath.Dir(dir)
	other := filepath.Join(root, "other.db")
	makeDB(t, other, true)
	cfg := writeConfig(t, root, "dbs:\n"+
		"  - path: "+other+"\n    replicas: [file://"+filepath.Join(root, "other-replica")+"]\n"+
		"  - dir: "+dir+"\n    recursive: true\n    watch: true\n    replicas: [file://"+filepath.Join(root, "fleet")+"]\n")
	d := startDaemon(t, bin, "replicate", "-config", cfg)

	out := databasesJSONOf(t, runFerry(t, "databases", "-json", "-config", cfg))
	if len(out.DBs) != 1+len(rels) {
		t.Fatalf("listed %+v, want %s and %v", out.DBs, other, rels)
	}
	for _, db := range out.DBs {
		if db.State != "active" && db.State != "idle" && db.State != "starting" {
			t.Errorf("%s: state %q, want active, idle or starting\ndaemon log:\n%s", db.DB, db.State, d.log())
		}
	}

	r := runBin(t, bin, "databases", "-config", cfg)
	if r.code != 0 || strings.Count(r.stdout, "\n") != 1+1+len(rels) {
		t.Errorf("databases: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	d.stop(t)
	out = databasesJSONOf(t, runFerry(t, "databases", "-json", "-config", cfg))
	for _, db := range out.DBs {
		if db.State != "-" {
			t.Errorf("%s: state %q after the daemon stopped, want -", db.DB, db.State)
		}
	}
}

func TestDatabasesFailsInOneLine(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.yml")
	wantFailure(t, runFerry(t, "databases", "-config", missing), 1, "ferry databases: read config: open "+missing)
	cfg := writeConfig(t, dir, "dbs:\n  - dir: "+filepath.Join(dir, "gone")+"\n    replicas: [file:///srv/r]\n")
	wantFailure(t, runFerry(t, "databases", "-config", cfg), 1, "ferry databases: dir entry "+filepath.Join(dir, "gone"))
	wantFailure(t, runFerry(t, "databases", "-config", cfg, "x.db"), 2, `ferry databases: unexpected argument "x.db"; run 'ferry databases -h'`)
	wantFailure(t, runFerry(t, "databases", "-config", ""), 2, "ferry databases: -config needs a path")
}
