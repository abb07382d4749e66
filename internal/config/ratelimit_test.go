package config

import (
	"strings"
	"testing"
)

func TestParseRateLimits(t *testing.T) {
	yml := `
dbs:
  - path: /data/app.db
    replicas:
      - url: s3://bkt/app
        max-requests-per-second: 100
        max-upload-bytes-per-second: 50MiB
      - url: file:///srv/r
        max-requests-per-second: 0.5
      - url: file:///srv/plain
      - s3://bkt/bare
  - path: /data/env.db
    replicas:
      - url: s3://bkt/env
        max-requests-per-second: ${RPS}
        max-upload-bytes-per-second: ${BPS}
files:
  - inbox: /in
    replica:
      url: s3://bkt/uploads
      max-upload-bytes-per-second: 1048576
`
	c, err := parse([]byte(yml), "ferry.yml", env(map[string]string{"RPS": "2.5e2", "BPS": "10 MB"}))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		r    Replica
		rps  float64
		bps  int64
	}{
		{"s3 mapping", c.DBs[0].Replicas[0], 100, 50 << 20},
		{"file, fractional rate, no byte limit", c.DBs[0].Replicas[1], 0.5, 0},
		{"mapping without limits", c.DBs[0].Replicas[2], 0, 0},
		{"bare url", c.DBs[0].Replicas[3], 0, 0},
		{"from the environment", c.DBs[1].Replicas[0], 250, 10_000_000},
		{"inbox replica", c.Files[0].Replica, 0, 1 << 20},
	} {
		if tc.r.MaxRequestsPerSecond != tc.rps || tc.r.MaxUploadBytesPerSecond != tc.bps {
			t.Errorf("%s: max-requests-per-second %v, max-upload-bytes-per-second %d; want %v and %d",
				tc.name, tc.r.MaxRequestsPerSecond, tc.r.MaxUploadBytesPerSecond, tc.rps, tc.bps)
		}
	}
}

// A URL named twice is one store with one pair of limits: mentions that
// give it other limits, or none against some, are refused, naming the
// line of the first.
func TestParseRateLimitErrors(t *testing.T) {
	const replica = "dbs:\n  - path: /a.db\n    replicas:\n      - url: s3://bkt/a\n"
	const rps = "ferry.yml:5: dbs[0].replicas[0].max-requests-per-second: must be a positive number, not "
	const bps = "ferry.yml:5: dbs[0].replicas[0].max-upload-bytes-per-second: "
	const alike = "has other max-requests-per-second or max-upload-bytes-per-second than at line 4; ferry opens one store per URL, so give them alike"
	tests := []struct {
		name, yaml, want string
	}{
		{"zero rate", replica + "        max-requests-per-second: 0\n", rps + `"0"`},
		{"negative rate", replica + "        max-requests-per-second: -10\n", rps + `"-10"`},
		{"rate with a unit", replica + "        max-requests-per-second: 100/s\n", rps + `"100/s"`},
		{"rate not a number", replica + "        max-requests-per-second: fast\n", rps + `"fast"`},
		{"rate NaN", replica + "        max-requests-per-second: NaN\n", rps + `"NaN"`},
		{"rate infinite", replica + "        max-requests-per-second: +Inf\n", rps + `"+Inf"`},
		{"rate a list", replica + "        max-requests-per-second: [1]\n", "ferry.yml:5: dbs[0].replicas[0].max-requests-per-second: expected a single value, got a list"},
		{"zero bytes", replica + "        max-upload-bytes-per-second: 0\n", bps + `must be positive, not "0"`},
		{"zero bytes with a unit", replica + "        max-upload-bytes-per-second: 0MiB\n", bps + `must be positive, not "0MiB"`},
		{"negative bytes", replica + "        max-upload-bytes-per-second: -5MiB\n", bps + `invalid size "-5MiB"; use bytes or a unit such as 512MiB or 1GiB`},
		{"bytes per second as a rate", replica + "        max-upload-bytes-per-second: 50MiB/s\n", bps + `invalid size "50MiB/s"`},
		{"fractional byte count", replica + "        max-upload-bytes-per-second: 1.5\n", bps + `invalid size "1.5"`},
		{"inbox rate", "files:\n  - inbox: /in\n    replica:\n      url: file:///r\n      max-requests-per-second: off\n",
			`ferry.yml:5: files[0].replica.max-requests-per-second: must be a positive number, not "off"`},
		{"db and inbox, other rates",
			replica + "        max-requests-per-second: 100\nfiles:\n  - inbox: /in\n    replica: {url: s3://bkt/a, max-requests-per-second: 50}\n",
			`ferry.yml:8: files[0].replica: replica "s3://bkt/a" ` + alike},
		{"db and inbox, limit against none",
			replica + "        max-upload-bytes-per-second: 1MiB\nfiles:\n  - inbox: /in\n    replica: s3://bkt/a\n",
			`ferry.yml:8: files[0].replica: replica "s3://bkt/a" ` + alike},
		{"two inboxes, other byte limits",
			"files:\n  - inbox: /in\n    replica: {url: file:///r, max-upload-bytes-per-second: 1MiB}\n  - inbox: /in2\n    replica: {url: file:///r/, max-upload-bytes-per-second: 1MB}\n",
			`ferry.yml:5: files[1].replica: replica "file:///r" has other max-requests-per-second or max-upload-bytes-per-second than at line 3`},
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

// Mentions of one URL that give it the same limits, spelt differently,
// are one store.
func TestParseRateLimitsAlike(t *testing.T) {
	yml := "dbs:\n  - path: /a.db\n    replicas:\n      - url: s3://bkt/a\n        max-requests-per-second: 100\n        max-upload-bytes-per-second: 1MiB\n" +
		"files:\n  - inbox: /in\n    replica: {url: s3://bkt/a/, max-requests-per-second: 1e2, max-upload-bytes-per-second: 1048576}\n"
	c, err := parse([]byte(yml), "ferry.yml", env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if r := c.Files[0].Replica; r.MaxRequestsPerSecond != 100 || r.MaxUploadBytesPerSecond != 1<<20 {
		t.Errorf("inbox replica: %+v", r)
	}
}
