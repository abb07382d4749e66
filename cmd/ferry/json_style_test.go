package main

import (
	"encoding/json"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestRestorePlanJSONIsSnakeCase checks that `restore -dry-run -json`
// speaks the one style every JSON output of ferry uses: snake_case keys,
// lists as lists even when empty, no Go field names, and URLs as written.
func TestRestorePlanJSONIsSnakeCase(t *testing.T) {
	needSQLite3(t)
	bin := ferryBinary(t)
	dir := t.TempDir()
	dbPath := filepath.Join(dir, "app.db")
	db := openAppDB(t, dbPath)
	mustExec(t, db, "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
	url := "file://" + filepath.Join(dir, "replica")
	d := startDaemon(t, bin, "replicate", dbPath, url)
	syncDB(t, bin, dbPath, d)

	r := runBin(t, bin, "restore", "-dry-run", "-json", url)
	if r.code != 0 {
		t.Fatalf("restore -dry-run -json: %s", r.stderr)
	}
	var plan map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &plan); err != nil {
		t.Fatalf("not JSON: %v: %s", err, r.stdout)
	}
	snake := regexp.MustCompile(`^[a-z][a-z0-9_]*$`)
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if !snake.MatchString(k) {
					t.Errorf("key %s.%s is not snake_case", path, k)
				}
				walk(path+"."+k, x)
			}
		case []any:
			for _, x := range v {
				walk(path+"[]", x)
			}
		}
	}
	walk("plan", plan)
	if _, ok := plan["segments"].([]any); !ok {
		t.Errorf("segments is %v, want a list", plan["segments"])
	}
	snap, ok := plan["snapshot"].(map[string]any)
	if !ok || snap["txid"] == nil || snap["page_size"] == nil {
		t.Errorf("snapshot lacks txid or page_size: %v", plan["snapshot"])
	}

	st := runBin(t, bin, "status", "-json", dbPath)
	if strings.Contains(st.stdout, `\u0026`) {
		t.Errorf("status -json escapes & in URLs: %s", st.stdout)
	}
}
