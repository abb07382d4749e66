package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

const (
	testKeyID  = "AKIAIOSFODNN7EXAMPLE"
	testSecret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
)

func secretConfig(t *testing.T) *Config {
	t.Helper()
	yml := "dbs:\n  - path: /a.db\n    replicas:\n      - url: s3://bkt/p\n        access-key-id: ${ID}\n        secret-access-key: ${SECRET}\n"
	c, err := parse([]byte(yml), "ferry.yml", env(map[string]string{"ID": testKeyID, "SECRET": testSecret}))
	if err != nil {
		t.Fatal(err)
	}
	if c.DBs[0].Replicas[0].SecretAccessKey.Reveal() != testSecret {
		t.Fatal("secret not decoded")
	}
	return c
}

func assertNoCredential(t *testing.T, what, out string) {
	t.Helper()
	if strings.Contains(out, testSecret) || strings.Contains(out, testKeyID) {
		t.Errorf("%s shows a credential: %s", what, out)
	}
}

func TestSecretNeverPrinted(t *testing.T) {
	c := secretConfig(t)
	r := c.DBs[0].Replicas[0]
	s := r.SecretAccessKey
	values := map[string]any{"Secret": s, "*Secret": &s, "Replica": r, "Config": *c, "*Config": c, "[]DB": c.DBs}
	for name, v := range values {
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%p", "%T", "%10.3s"} {
			assertNoCredential(t, fmt.Sprintf("Sprintf(%q, %s)", verb, name), fmt.Sprintf(verb, v))
		}
		assertNoCredential(t, "Sprint "+name, fmt.Sprint(v))
		assertNoCredential(t, "Sprintln "+name, fmt.Sprintln(v))

		out, err := json.Marshal(v)
		if err != nil {
			t.Fatalf("json.Marshal(%s): %v", name, err)
		}
		assertNoCredential(t, "json.Marshal "+name, string(out))

		yout, err := yaml.Marshal(v)
		if err != nil {
			t.Fatalf("yaml.Marshal(%s): %v", name, err)
		}
		assertNoCredential(t, "yaml.Marshal "+name, string(yout))

		for _, h := range []func(*bytes.Buffer) slog.Handler{
			func(b *bytes.Buffer) slog.Handler { return slog.NewJSONHandler(b, nil) },
			func(b *bytes.Buffer) slog.Handler { return slog.NewTextHandler(b, nil) },
		} {
			var buf bytes.Buffer
			slog.New(h(&buf)).Info("loaded", "value", v, slog.Group("g", "nested", v))
			assertNoCredential(t, "slog "+name, buf.String())
		}
	}
	if got := fmt.Sprint(s); got != "[redacted]" {
		t.Errorf("Sprint(secret) = %q, want [redacted]", got)
	}
	if got, _ := json.Marshal(s); string(got) != `"[redacted]"` {
		t.Errorf("json.Marshal(secret) = %s", got)
	}
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("x", "secret", s)
	if !strings.Contains(buf.String(), `"secret":"[redacted]"`) {
		t.Errorf("slog JSON: %s", buf.String())
	}
}

func TestSecretZeroAndEqual(t *testing.T) {
	var zero Secret
	if !zero.IsZero() || zero.Reveal() != "" || zero.String() != "[redacted]" {
		t.Error("zero Secret misbehaves")
	}
	if !NewSecret("").IsZero() || NewSecret("x").IsZero() {
		t.Error("IsZero wrong")
	}
	if !NewSecret("a").Equal(NewSecret("a")) || NewSecret("a").Equal(NewSecret("b")) || !zero.Equal(NewSecret("")) {
		t.Error("Equal wrong")
	}
}

// Errors about a credential's field name the field, never the value.
func TestErrorsNeverShowCredentials(t *testing.T) {
	for _, yml := range []string{
		"dbs:\n  - path: /a.db\n    replicas:\n      - url: file:///r\n        secret-access-key: " + testSecret + "\n",
		"dbs:\n  - path: /a.db\n    replicas:\n      - url: s3://bkt\n        secret-access-key: " + testSecret + "\n",
		"dbs:\n  - path: /a.db\n    replicas:\n      - url: s3://bkt\n        secret-access-key: [" + testSecret + "]\n",
		"dbs:\n  - path: /a.db\n    replicas:\n      - url: s3://bkt\n        access-key-id: " + testKeyID + "\n        secret-access-key: " + testSecret + "\n        part-size: 1\n",
		"dbs:\n  - path: /a.db\n    replicas:\n      - url: s3://" + testKeyID + ":" + testSecret + "@bkt\n",
		"dbs:\n  - path: /a.db\n    replicas:\n      - s3://bkt?secret-access-key=" + testSecret + "\n",
	} {
		_, err := parse([]byte(yml), "ferry.yml", env(nil))
		if err == nil {
			t.Fatalf("config accepted:\n%s", yml)
		}
		assertNoCredential(t, "error", err.Error())
	}
}
