package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ferrydb/ferry/internal/testenv"
	"github.com/ferrydb/ferry/internal/uploader"
)

// BenchmarkInboxSmallFiles measures a running `ferry replicate` shipping
// an inbox of 10,000 files of 4 KiB (FERRY_BENCH_INBOX_FILES changes the
// count) to versitygw: each round renames a directory of them into the
// inbox at once, as an application delivers files, and times it until
// the inbox and the files spool are empty (every file confirmed by the
// store and gone from the spool). Each round also PUTs the same files
// from disk with the objstore S3 store, pushWorkers at a time: the
// server's rate at that moment, which ratio compares with. cpu-ms/file
// is the daemon's CPU time per file.
func BenchmarkInboxSmallFiles(b *testing.B) {
	srv := testenv.S3(b)
	bin := ferryBinary(b)
	dir := b.TempDir()
	src, stage, in, spoolRoot := filepath.Join(dir, "src"), filepath.Join(dir, "stage"), filepath.Join(dir, "inbox"), filepath.Join(dir, "spool")
	keys := smallFiles(b, src, "FERRY_BENCH_INBOX_FILES")
	n := len(keys)
	for _, d := range []string{stage, in} {
		if err := os.Mkdir(d, 0o755); err != nil {
			b.Fatal(err)
		}
	}
	bucket := testenv.Bucket(b, srv)
	url := fmt.Sprintf("s3://%s/inbox?endpoint=%s&region=%s&force-path-style=true", bucket, srv.Endpoint, srv.Region)
	cfg := filepath.Join(dir, "ferry.yml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, "spool: %s\nfiles:\n  - inbox: %s\n    replica: %q\n", spoolRoot, in, url), 0o644); err != nil {
		b.Fatal(err)
	}
	daemon := exec.Command(bin, "-log-level", "warn", "replicate", "-config", cfg)
	daemon.Env = append(os.Environ(), "AWS_ACCESS_KEY_ID="+srv.AccessKey, "AWS_SECRET_ACCESS_KEY="+srv.SecretKey)
	var daemonErr bytes.Buffer
	daemon.Stderr = &daemonErr
	if err := daemon.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		daemon.Process.Signal(syscall.SIGTERM)
		daemon.Wait()
	}()
	queue := filepath.Join(spoolRoot, "files", "q", uploader.FilesQueue)
	checkout := filepath.Join(queue, "checkout")

	var ferryTime, rawTime, ferryCPU, rawCPU time.Duration
	round := 0
	for b.Loop() {
		round++
		// The round's files, made before the clock starts, on the
		// inbox's file system, to be renamed in at once.
		batch := filepath.Join(stage, fmt.Sprintf("r%d", round))
		if err := os.Mkdir(batch, 0o755); err != nil {
			b.Fatal(err)
		}
		for _, k := range keys {
			if err := os.Link(filepath.Join(src, k), filepath.Join(batch, k)); err != nil {
				b.Fatal(err)
			}
		}
		inbox := func() benchRun {
			cpu0 := processCPU(b, daemon.Process.Pid)
			start := time.Now()
			if err := os.Rename(batch, filepath.Join(in, filepath.Base(batch))); err != nil {
				b.Fatal(err)
			}
			deadline := start.Add(10 * time.Minute)
			for countFiles(b, in) > 0 || queuedEntries(b, queue) > 0 || queuedEntries(b, checkout) > 0 {
				if time.Now().After(deadline) {
					b.Fatalf("the inbox did not drain in 10 minutes: %d files in it; daemon: %s", countFiles(b, in), daemonErr.String())
				}
				time.Sleep(20 * time.Millisecond)
			}
			return benchRun{time.Since(start), processCPU(b, daemon.Process.Pid) - cpu0}
		}
		var f, r benchRun
		if round%2 == 1 {
			r = benchRawPuts(b, srv, src, keys)
			f = inbox()
		} else {
			f = inbox()
			r = benchRawPuts(b, srv, src, keys)
		}
		ferryTime += f.took
		rawTime += r.took
		ferryCPU += f.cpu
		rawCPU += r.cpu
		b.Logf("round %d: inbox %.0f files/s (%.3f CPU ms/file), raw PUTs %.0f files/s (%.3f CPU ms/file), ratio %.2f",
			round, float64(n)/f.took.Seconds(), perFileMs(f.cpu, n),
			float64(n)/r.took.Seconds(), perFileMs(r.cpu, n), r.took.Seconds()/f.took.Seconds())
	}
	b.StopTimer()
	b.ReportMetric(float64(n*round)/ferryTime.Seconds(), "files/s")
	b.ReportMetric(float64(n*round)/rawTime.Seconds(), "raw-files/s")
	b.ReportMetric(rawTime.Seconds()/ferryTime.Seconds(), "ratio")
	b.ReportMetric(perFileMs(ferryCPU, n*round), "cpu-ms/file")
	b.ReportMetric(perFileMs(rawCPU, n*round), "raw-cpu-ms/file")
	if got := countObjects(b, srv, bucket, "inbox/"); got != n*round {
		b.Fatalf("the bucket holds %d objects, want %d", got, n*round)
	}
}

// processCPU is the CPU time (user and system) the process pid has used
// so far, from /proc.
func processCPU(b *testing.B, pid int) time.Duration {
	b.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	// The fields after the command name, which is in parentheses and may
	// hold spaces: utime and stime are the 12th and 13th of them.
	fields := strings.Fields(string(raw[bytes.LastIndexByte(raw, ')')+1:]))
	utime, err1 := strconv.ParseInt(fields[11], 10, 64)
	stime, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err1 != nil || err2 != nil {
		b.Fatalf("%s: %v %v", raw, err1, err2)
	}
	const ticks = 100 // USER_HZ on Linux
	return time.Duration(utime+stime) * time.Second / ticks
}
