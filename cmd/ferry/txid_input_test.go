package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferrydb/ferry/internal/testenv"
)

// TestParseTXID pins the rule for a txid on the command line: decimal as
// 'ferry txids' prints it, hex only with 0x, nothing zero-padded (object
// names pad 16 hex digits), and never 0.
func TestParseTXID(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want uint64
		err  string // in the error, when one is wanted
	}{
		{in: "1", want: 1},
		{in: "16", want: 16},
		{in: "18446744073709551615", want: 1<<64 - 1},
		{in: "0x10", want: 16},
		{in: "0X4D2", want: 1234},
		{in: "0x00000000000004d2", want: 1234},
		{in: "0", err: "txid 0 names no transaction"},
		{in: "0x0", err: "txid 0 names no transaction"},
		{in: "0000000000000000", err: "txid 0 names no transaction"},
		{in: "0000000000000010", err: "zero-padded txids are ambiguous: object names write txid 0x10 (16 in decimal) this way, while 'ferry txids' prints decimal; write -txid 0x10, or -txid 10 for decimal"},
		{in: "00000000000004d2", err: "write -txid 0x4d2 or -txid 1234"},
		{in: "010", err: "zero-padded txids are ambiguous"},
		{in: "4d2", err: "if 4d2 is hexadecimal, write 0x4d2"},
		{in: "ten", err: "want a transaction ID such as 1234"},
		{in: "", err: "want a transaction ID"},
		{in: "-1", err: "want a transaction ID"},
		{in: "+5", err: "want a transaction ID"},
		{in: " 5", err: "want a transaction ID"},
		{in: "1_000", err: "want a transaction ID"},
		{in: "0x", err: "want a transaction ID"},
		{in: "0x1g", err: "want a transaction ID"},
		{in: "18446744073709551616", err: "does not fit in 64 bits"},
		{in: "0x10000000000000000", err: "does not fit in 64 bits"},
	} {
		got, err := parseTXID(tc.in)
		switch {
		case tc.err == "" && (err != nil || got != tc.want):
			t.Errorf("parseTXID(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("parseTXID(%q) = %d, %v; want an error with %q", tc.in, got, err, tc.err)
		case err != nil && strings.Contains(err.Error(), "\n"):
			t.Errorf("parseTXID(%q): the error is not one line: %q", tc.in, err)
		}
	}
}

// TestTXIDInputThroughCLI restores a real replica of 18 txids by txid
// through the binary. -txid 0 used to restore the latest state, and
// -txid 0000000000000010, the form of object names, used to restore txid
// 10 where its object holds txid 16: both must fail with one line and
// write nothing; 16 and 0x10 restore exactly txid 16.
func TestTXIDInputThroughCLI(t *testing.T) {
	if _, err := exec.LookPath("sqlite3"); err != nil {
		testenv.Missing(t, "the sqlite3 command (Debian package sqlite3)")
	}
	bin := ferryBinary(t)
	b := buildReplica(t, bin, replicaKinds["file"](t), 17, false)
	if b.last < 17 || b.hashes[16] == "" {
		t.Fatalf("the replica holds txids up to %d, without txid 16 on its own: %v", b.last, b.hashes)
	}
	dir := t.TempDir()
	out := filepath.Join(dir, "out.db")
	for _, tc := range []struct{ txid, want string }{
		{"0", "ferry restore: invalid value \"0\" for flag -txid: txid 0 names no transaction: txids start at 1 (leave -txid out to restore the latest state); run 'ferry restore -h'"},
		{"0000000000000010", "ferry restore: invalid value \"0000000000000010\" for flag -txid: zero-padded txids are ambiguous: object names write txid 0x10 (16 in decimal) this way, while 'ferry txids' prints decimal; write -txid 0x10, or -txid 10 for decimal; run 'ferry restore -h'"},
		{"sixteen", "want a transaction ID such as 1234 (decimal, as 'ferry txids' prints it) or 0x4d2 (hexadecimal)"},
	} {
		r := runBin(t, bin, "restore", "-txid", tc.txid, "-o", out, b.url)
		if r.code != exitUsage || strings.Count(r.stderr, "\n") != 1 || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("restore -txid %s: exit %d, stderr %q, stdout %q; want exit 2 and one line with %q", tc.txid, r.code, r.stderr, r.stdout, tc.want)
		}
		if _, err := os.Lstat(out); err == nil {
			t.Fatalf("restore -txid %s wrote %s", tc.txid, out)
		}
	}
	for _, txid := range []string{"16", "0x10"} {
		out := filepath.Join(dir, "txid-"+txid+".db")
		if r := runBin(t, bin, "restore", "-txid", txid, "-o", out, b.url); r.code != 0 {
			t.Fatalf("restore -txid %s: %s", txid, r.stderr)
		}
		integrityOK(t, out)
		if got := sha3sum(t, out); got != b.hashes[16] {
			t.Fatalf("restore -txid %s has hash %s; the source had %s at txid 16", txid, got, b.hashes[16])
		}
	}
	r := runBin(t, bin, "restore", "-h")
	for _, want := range []string{"in decimal, as 'ferry txids' prints it", "hexadecimal with 0x", "zero-padded", "refused as ambiguous", "Txids start"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("restore -h does not say %q:\n%s", want, r.stdout)
		}
	}
}
