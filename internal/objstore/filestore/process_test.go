package filestore_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferrydb/ferry/internal/objstore"
	"github.com/ferrydb/ferry/internal/objstore/filestore"
)

// TestMain lets the test binary double as a racer process for
// TestCreateOnlyRaceAcrossProcesses.
func TestMain(m *testing.M) {
	if root := os.Getenv("FILESTORE_RACER_ROOT"); root != "" {
		os.Exit(racer(root, os.Getenv("FILESTORE_RACER_ID")))
	}
	os.Exit(m.Run())
}

// racer makes create-only puts of a run of keys, one per round, and prints
// W for each round it won and L for each it lost.
func racer(root, id string) int {
	s, err := filestore.New(root)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	defer s.Close()
	for round := range 50 {
		key := fmt.Sprintf("lease/%03d", round)
		_, err := s.Put(context.Background(), key, strings.NewReader(id), objstore.PutOptions{IfNoneMatch: true})
		switch {
		case err == nil:
			fmt.Print("W")
		case objstore.IsPreconditionFailed(err):
			fmt.Print("L")
		default:
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
	}
	return 0
}

func TestCreateOnlyRaceAcrossProcesses(t *testing.T) {
	root := t.TempDir()
	const procs = 6
	var cmds []*exec.Cmd
	var outs []*bytes.Buffer
	for i := range procs {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "FILESTORE_RACER_ROOT="+root, fmt.Sprintf("FILESTORE_RACER_ID=proc-%d", i))
		out := new(bytes.Buffer)
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, cmd)
		outs = append(outs, out)
	}
	wins := make([]int, 50)
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("racer %d: %v: %s", i, err, outs[i])
		}
		for round, c := range outs[i].String() {
			if c == 'W' {
				wins[round]++
			}
		}
	}
	for round, n := range wins {
		if n != 1 {
			t.Errorf("round %d: %d processes won a create-only put, want exactly 1", round, n)
		}
	}
}

func TestCorruptedFileFailsGet(t *testing.T) {
	root := t.TempDir()
	s, err := filestore.New(root)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	if _, err := s.Put(ctx, "seg/1", bytes.NewReader([]byte("hello, world")), objstore.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	// Flip one byte in place; the attribute holding the checksum stays.
	f, err := os.OpenFile(filepath.Join(root, "seg", "1"), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("j"), 0); err != nil {
		t.Fatal(err)
	}
	f.Close()
	rc, _, err := s.Get(ctx, "seg/1", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	_, err = readAll(rc)
	if !errors.Is(err, objstore.ErrCorrupt) || !strings.Contains(err.Error(), "seg/1") {
		t.Fatalf("reading a flipped byte: err = %v, want ErrCorrupt naming seg/1", err)
	}
	if err := os.Truncate(filepath.Join(root, "seg", "1"), 5); err != nil {
		t.Fatal(err)
	}
	rc2, _, err := s.Get(ctx, "seg/1", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer rc2.Close()
	if _, err := readAll(rc2); !errors.Is(err, objstore.ErrCorrupt) {
		t.Fatalf("reading a truncated object: err = %v, want ErrCorrupt", err)
	}
}

func readAll(rc interface{ Read([]byte) (int, error) }) ([]byte, error) {
	var buf bytes.Buffer
	_, err := buf.ReadFrom(rc)
	return buf.Bytes(), err
}

func TestKeysThatEscapeAreRejected(t *testing.T) {
	s := newStore(t)
	for _, key := range []string{"", "../x", "a/../../x", "/abs", "a//b", ".ferry-tmp/x", "a/./b", "sub/.ferry-locks/01"} {
		if _, err := s.Put(context.Background(), key, strings.NewReader("x"), objstore.PutOptions{}); err == nil {
			t.Errorf("put %q succeeded, want an error", key)
		}
	}
}

func TestListOrderAcrossDirectories(t *testing.T) {
	s := newStore(t)
	keys := []string{"a.b", "a/1", "a/z", "a0", "b/c/d", "b/c.e"}
	for _, k := range keys {
		if _, err := s.Put(context.Background(), k, strings.NewReader(k), objstore.PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	for info, err := range s.List(context.Background(), "") {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, info.Key)
	}
	want := []string{"a.b", "a/1", "a/z", "a0", "b/c.e", "b/c/d"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("list = %v, want byte order %v", got, want)
	}
}

func TestForeignFileReadable(t *testing.T) {
	root := t.TempDir()
	s, err := filestore.New(root)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := os.WriteFile(filepath.Join(root, "copied-in"), []byte("by hand"), 0o644); err != nil {
		t.Fatal(err)
	}
	rc, info, err := s.Get(context.Background(), "copied-in", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := readAll(rc)
	if err != nil || string(b) != "by hand" || info.Size != 7 {
		t.Fatalf("foreign file: %q, %v, size %d", b, err, info.Size)
	}
}

func TestDeletePrunesEmptyDirectories(t *testing.T) {
	root := t.TempDir()
	s, err := filestore.New(root)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	if _, err := s.Put(ctx, "x/y/z", strings.NewReader("1"), objstore.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, "x/y/z"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "x")); !os.IsNotExist(err) {
		t.Fatalf("empty directory x left behind: %v", err)
	}
}
