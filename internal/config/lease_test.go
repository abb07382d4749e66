package config

import (
	"strings"
	"testing"
	"time"
)

func TestParseLease(t *testing.T) {
	const db = "dbs:\n  - path: /data/app.db\n    replicas: [file:///srv/r]\n"
	c, err := parse([]byte(db), "ferry.yml", env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c.DBs[0].Lease != 0 {
		t.Errorf("lease without the key: %s; want none", c.DBs[0].Lease)
	}
	c, err = parse([]byte(db+"    lease: 30s\n"), "ferry.yml", env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c.DBs[0].Lease != 30*time.Second {
		t.Errorf("lease: 30s gave %s", c.DBs[0].Lease)
	}
	for v, want := range map[string]string{
		"1s":   "ferry.yml:4: dbs[0].lease: 1s is shorter than 3s",
		"0s":   "ferry.yml:4: dbs[0].lease: must be positive",
		"-5s":  "ferry.yml:4: dbs[0].lease: must be positive",
		"soon": "ferry.yml:4: dbs[0].lease: ",
	} {
		_, err := parse([]byte(db+"    lease: "+v+"\n"), "ferry.yml", env(nil))
		if err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("lease: %s gave %v; want %q", v, err, want)
		}
	}
}
