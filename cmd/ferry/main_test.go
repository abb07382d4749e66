package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

type result struct {
	code           int
	stdout, stderr string
}

func runFerry(t *testing.T, args ...string) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), args, &stdout, &stderr)
	return result{code, stdout.String(), stderr.String()}
}

// wantFailure checks that r failed with code and exactly one stderr line
// starting with prefix and containing each of parts.
func wantFailure(t *testing.T, r result, code int, prefix string, parts ...string) {
	t.Helper()
	if r.code != code {
		t.Errorf("exit %d, want %d (stderr %q)", r.code, code, r.stderr)
	}
	if strings.Count(r.stderr, "\n") != 1 || !strings.HasSuffix(r.stderr, "\n") {
		t.Errorf("stderr is not exactly one line: %q", r.stderr)
	}
	if !strings.HasPrefix(r.stderr, prefix) {
		t.Errorf("stderr %q does not start with %q", r.stderr, prefix)
	}
	for _, p := range parts {
		if !strings.Contains(r.stderr, p) {
			t.Errorf("stderr %q does not contain %q", r.stderr, p)
		}
	}
	if r.stdout != "" {
		t.Errorf("unexpected stdout: %q", r.stdout)
	}
}

// The flags each command takes, from the user surface in the design.
var commandFlags = map[string][]string{
	"replicate": {"-config", "-exec", "-shutdown-timeout", "-restore-if-db-not-exists", "-key-file"},
	"restore":   {"-config", "-o", "-txid", "-timestamp", "-if-db-not-exists", "-if-replica-exists", "-parallelism", "-dry-run", "-json", "-key-file"},
	"snapshots": {"-json", "-key-file"},
	"txids":     {"-json", "-key-file"},
	"status":    {"-json", "-config"},
	"databases": {"-json", "-config"},
	"sync":      {"-timeout"},
	"verify":    {"-deep", "-key-file"},
	"gc":        {"-dry-run", "-retention", "-grace", "-replica", "-key-file"},
	"follow":    {"-interval"},
	"push":      {"-key", "-wait", "-key-file"},
	"get":       {"-key-file"},
	"keygen":    {"-o"},
	"spool":     {"fsck"},
	"artifact":  {"upload", "download", "peek"},
	"version":   nil,
}

func TestHelpListsEveryCommand(t *testing.T) {
	for _, args := range [][]string{{"-h"}, {"-help"}, {"--help"}, {"help"}} {
		r := runFerry(t, args...)
		if r.code != 0 || r.stderr != "" {
			t.Fatalf("%v: exit %d, stderr %q", args, r.code, r.stderr)
		}
		for name := range commandFlags {
			if !strings.Contains(r.stdout, "\n  "+name+" ") {
				t.Errorf("%v does not list %s:\n%s", args, name, r.stdout)
			}
		}
		for _, c := range commands(newApp(nil, nil)) {
			if !strings.Contains(r.stdout, c.Summary()) {
				t.Errorf("%v does not show the summary of %s", args, c.Name())
			}
		}
	}
	if len(commands(newApp(nil, nil))) != len(commandFlags) {
		t.Errorf("the test knows %d commands, the CLI has %d", len(commandFlags), len(commands(newApp(nil, nil))))
	}
}

func TestNoArgumentsPrintsUsageAndFails(t *testing.T) {
	r := runFerry(t)
	if r.code != 2 || r.stdout != "" || !strings.Contains(r.stderr, "Usage: ferry") {
		t.Errorf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
}

func TestCommandHelp(t *testing.T) {
	for name, flags := range commandFlags {
		for _, args := range [][]string{{name, "-h"}, {"help", name}, {name, "--help"}} {
			r := runFerry(t, args...)
			if r.code != 0 || r.stderr != "" {
				t.Errorf("%v: exit %d, stderr %q", args, r.code, r.stderr)
				continue
			}
			if !strings.HasPrefix(r.stdout, "Usage: ferry "+name) {
				t.Errorf("%v: usage does not start with the synopsis:\n%s", args, r.stdout)
			}
			for _, f := range flags {
				if !strings.Contains(r.stdout, f) {
					t.Errorf("%v: usage does not mention %s:\n%s", args, f, r.stdout)
				}
			}
		}
	}
	for _, args := range [][]string{{"spool", "fsck", "-h"}, {"artifact", "upload", "-h"}, {"artifact", "peek", "-h"}} {
		r := runFerry(t, args...)
		if r.code != 0 || !strings.HasPrefix(r.stdout, "Usage: ferry "+strings.Join(args[:2], " ")) {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", args, r.code, r.stdout, r.stderr)
		}
	}
}

func TestUnknownCommand(t *testing.T) {
	r := runFerry(t, "x")
	wantFailure(t, r, 2, `ferry: unknown command "x"; run 'ferry -h'`)
	r = runFerry(t, "help", "nope")
	wantFailure(t, r, 2, `ferry: unknown command "nope"`)
}

func TestVersion(t *testing.T) {
	r := runFerry(t, "version")
	if r.code != 0 || r.stderr != "" {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
	want := "ferry " + buildVersion() + " " + runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH + "\n"
	if r.stdout != want {
		t.Errorf("version printed %q, want %q", r.stdout, want)
	}
	wantFailure(t, runFerry(t, "version", "extra"), 2, `ferry version: unexpected argument "extra"`)
}

func TestGlobalFlags(t *testing.T) {
	r := runFerry(t, "-log-level", "debug", "-log-format", "json", "version")
	if r.code != 0 {
		t.Errorf("exit %d, stderr %q", r.code, r.stderr)
	}
	wantFailure(t, runFerry(t, "-log-level", "loud", "version"), 2, `ferry: invalid value "loud" for flag -log-level: want debug, info, warn or error; run 'ferry -h'`)
	wantFailure(t, runFerry(t, "-log-format", "xml", "version"), 2, `ferry: invalid value "xml" for flag -log-format`)
	wantFailure(t, runFerry(t, "-nope", "version"), 2, `ferry: flag provided but not defined: -nope`)
}

func TestRestoreBadURL(t *testing.T) {
	wantFailure(t, runFerry(t, "restore", "s3://"), 1, `ferry restore: replica URL "s3://": missing bucket name`+"\n")
	wantFailure(t, runFerry(t, "restore", "-o", "/tmp/x", "ftp://h/x"), 1, `ferry restore: unknown scheme "ftp" in replica URL "ftp://h/x"`)
}

// TestDatabaseCommandsFailClearly covers what the database commands say
// about inputs they cannot work with, each in one line.
func TestDatabaseCommandsFailClearly(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty.db")
	os.WriteFile(empty, nil, 0o600)
	notSQLite := filepath.Join(dir, "text.db")
	os.WriteFile(notSQLite, []byte("this is not a database, just some text that is long enough to have a header"), 0o600)
	replica := "file://" + filepath.Join(dir, "replica")
	cfg := writeConfig(t, dir, "dbs:\n  - path: "+empty+"\n    replicas: [\""+replica+"\"]\n")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"replicate", empty, replica}, "not in WAL mode"},
		{[]string{"replicate", notSQLite, replica}, "not"},
		{[]string{"replicate", filepath.Join(dir, "missing.db"), replica}, "no such file"},
		{[]string{"replicate", "-config", cfg}, "not in WAL mode"},
		{[]string{"status", "-config", cfg}, "no ferry daemon is replicating " + empty},
		{[]string{"status", empty}, "no ferry daemon is replicating " + empty},
		{[]string{"sync", "-timeout", "1s", empty}, "no ferry daemon is replicating " + empty},
	} {
		r := runFerry(t, tc.args...)
		if r.code != 1 || !strings.Contains(r.stderr, tc.want) || strings.Count(r.stderr, "\n") != 1 {
			t.Errorf("%v: exit %d, stderr %q; want exit 1 and one line with %q", tc.args, r.code, r.stderr, tc.want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "replica")); err == nil {
		entries, _ := os.ReadDir(filepath.Join(dir, "replica"))
		for _, e := range entries {
			if e.Name()[0] != '.' {
				t.Errorf("a refused replicate wrote %s into the replica", e.Name())
			}
		}
	}
}

func writeConfig(t *testing.T, dir, body string) string {
	t.Helper()
	p := filepath.Join(dir, "ferry.yml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestConfigErrors(t *testing.T) {
	dir := t.TempDir()
	cfg := writeConfig(t, dir, "dbs:\n  - path: /data/app.db\n    replicas: [file:///srv/r]\n\n    replcas: []\n")
	for _, cmd := range []string{"replicate", "status"} {
		wantFailure(t, runFerry(t, cmd, "-config", cfg), 1, "ferry "+cmd+": "+cfg+`:5: unknown key "replcas" in dbs[0]`)
	}
	wantFailure(t, runFerry(t, "restore", "-config", cfg, "/data/app.db"), 1, "ferry restore: "+cfg+`:5: unknown key "replcas" in dbs[0]`)

	wantFailure(t, runFerry(t, "replicate", "-config", filepath.Join(dir, "missing.yml")), 1, "ferry replicate: read config: open ", "missing.yml")

	good := filepath.Join(dir, "good.yml")
	if err := os.WriteFile(good, []byte("dbs:\n  - path: /data/app.db\n    replicas: [file:///srv/r]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	wantFailure(t, runFerry(t, "restore", "-config", good, "/data/other.db"), 1, "ferry restore: database /data/other.db is not in "+good)
}

// A credential reaches ferry through the environment and the config; a
// failure must never print it, whatever went wrong.
func TestFailuresNeverShowCredentials(t *testing.T) {
	const secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
	t.Setenv("FERRY_TEST_SECRET", secret)
	dir := t.TempDir()
	cfg := writeConfig(t, dir, "dbs:\n  - path: /data/app.db\n    replicas:\n      - url: s3://bkt\n        access-key-id: AKIA\n        secret-access-key: ${FERRY_TEST_SECRET}\n        part-size: 1\n")
	for _, args := range [][]string{
		{"-log-level", "debug", "replicate", "-config", cfg},
		{"restore", "-o", "/tmp/x", "s3://AKIA:" + secret + "@bkt/x"},
		{"restore", "-o", "/tmp/x", "s3://bkt/x?secret=" + secret},
		{"push", cfg, "s3://AKIA:" + secret + "@bkt/x"},
	} {
		r := runFerry(t, args...)
		if r.code == 0 || strings.Contains(r.stderr+r.stdout, secret) || strings.Count(r.stderr, "\n") != 1 {
			t.Errorf("%v: exit %d, stderr %q", args, r.code, r.stderr)
		}
	}
}

func TestUsageErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"restore"}, `ferry restore: want one DB_PATH or REPLICA_URL, got 0 arguments; run 'ferry restore -h'`},
		{[]string{"restore", "-nope", "x"}, `ferry restore: flag provided but not defined: -nope; run 'ferry restore -h'`},
		{[]string{"restore", "-txid", "ten", "x"}, `ferry restore: invalid value "ten" for flag -txid: want a transaction ID`},
		{[]string{"restore", "-timestamp", "yesterday", "x"}, `ferry restore: invalid value "yesterday" for flag -timestamp`},
		{[]string{"restore", "-txid", "1", "-timestamp", "2024-01-02T03:04:05Z", "x"}, `ferry restore: -txid and -timestamp exclude each other`},
		{[]string{"restore", "-parallelism", "0", "x"}, `ferry restore: -parallelism must be at least 1`},
		{[]string{"restore", "s3://bkt/x"}, `ferry restore: restoring from a replica URL needs -o OUTPUT`},
		{[]string{"restore", "a", "b"}, `ferry restore: want one DB_PATH or REPLICA_URL, got 2 arguments`},
		{[]string{"replicate", "/a.db"}, `ferry replicate: DB_PATH needs at least one REPLICA_URL`},
		{[]string{"replicate", "-config", "x.yml", "/a.db", "file:///r"}, `ferry replicate: give either -config or DB_PATH REPLICA_URL..., not both`},
		{[]string{"sync", "-timeout", "0s", "/a.db"}, `ferry sync: invalid value "0s" for flag -timeout: must be positive`},
		{[]string{"sync", "s3://bkt/x"}, `ferry sync: sync takes the DB_PATH`},
		{[]string{"follow", "s3://bkt/x"}, `ferry follow: want REPLICA_URL and DB_PATH, got 1 arguments`},
		{[]string{"follow", "-interval", "soon", "s3://bkt/x", "/a.db"}, `ferry follow: invalid value "soon" for flag -interval`},
		{[]string{"push", "-key", "a/../b", dir, "s3://bkt"}, `ferry push: invalid value "a/../b" for flag -key`},
		{[]string{"push", "s3://bkt"}, `ferry push: want one or more PATHs and a REPLICA_URL`},
		{[]string{"spool"}, `ferry spool: missing subcommand; run 'ferry spool -h'`},
		{[]string{"spool", "check"}, `ferry spool: unknown subcommand "check"`},
		{[]string{"spool", "fsck"}, `ferry spool: want one SPOOL_DIR, got 0 arguments; run 'ferry spool fsck -h'`},
		{[]string{"artifact", "peek"}, `ferry artifact: want 1 arguments, got 0; run 'ferry artifact peek -h'`},
		{[]string{"artifact", "fetch", "x"}, `ferry artifact: unknown subcommand "fetch"`},
	}
	for _, tt := range tests {
		wantFailure(t, runFerry(t, tt.args...), 2, tt.want)
	}
}

func TestArgumentErrors(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"replicate", filepath.Join(dir, "missing.db"), "file:///r"}, "ferry replicate: stat " + filepath.Join(dir, "missing.db") + ": no such file or directory"},
		{[]string{"replicate", "/a.db", "s3://"}, `ferry replicate: replica URL "s3://": missing bucket name`},
		{[]string{"replicate", "/a.db", "backup/dir"}, `ferry replicate: "backup/dir" is not a replica URL`},
		{[]string{"snapshots", "s3://BKT"}, `ferry snapshots: replica URL "s3://BKT": invalid bucket name "BKT"`},
		{[]string{"verify", "file://relative/x"}, `ferry verify: replica URL "file://relative/x": file URLs take no host`},
		{[]string{"follow", "/a.db", "/b.db"}, `ferry follow: "/a.db" is not a replica URL`},
		{[]string{"push", filepath.Join(dir, "nope"), "s3://bkt"}, "ferry push: stat " + filepath.Join(dir, "nope") + ": no such file or directory"},
		{[]string{"spool", "fsck", filepath.Join(dir, "nope")}, "ferry spool: stat "},
		{[]string{"artifact", "peek", "s3://bkt"}, `ferry artifact: replica URL "s3://bkt" names no key; expected REPLICA_URL/KEY`},
		{[]string{"artifact", "upload", file, "s3://bkt/k"}, "ferry artifact: " + file + " is not a directory"},
		{[]string{"sync", dir}, "ferry sync: " + dir + " is a directory, not a file"},
	}
	for _, tt := range tests {
		wantFailure(t, runFerry(t, tt.args...), 1, tt.want)
	}
}

func TestConfigLoggingAppliesUnlessFlagged(t *testing.T) {
	dir := t.TempDir()
	cfg := writeConfig(t, dir, "log-level: debug\nlog-format: json\ndbs:\n  - path: /data/app.db\n    replicas: [file:///srv/r]\n")
	r := runFerry(t, "replicate", "-config", cfg)
	if !strings.Contains(r.stderr, `"msg":"loaded config"`) {
		t.Errorf("config's debug JSON logging not applied: %q", r.stderr)
	}
	r = runFerry(t, "-log-level", "info", "replicate", "-config", cfg)
	if r.stderr != "ferry replicate: database /data/app.db: no such file\n" {
		t.Errorf("-log-level info did not win over the config: %q", r.stderr)
	}
}

func TestOneLine(t *testing.T) {
	if got := oneLine("a\nb\r\n\nc\n"); got != "a; b; c" {
		t.Errorf("oneLine = %q", got)
	}
}
