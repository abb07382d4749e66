package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/ferrydb/ferry/internal/durable"
)

type getCmd struct{ *app }

func (*getCmd) Name() string    { return "get" }
func (*getCmd) Summary() string { return "download one pushed file from a replica" }
func (*getCmd) Usage() string {
	return `
Usage: ferry get [-key-file PATH] REPLICA_URL KEY OUTPUT

Downloads the object KEY that 'ferry push' (or an inbox) stored in
REPLICA_URL into the new file OUTPUT. A file pushed with -key-file, or
through an inbox with encryption, needs the same key; every byte is then
authenticated before OUTPUT appears. OUTPUT is written beside itself and
renamed into place only once complete.`
}

func (c *getCmd) Run(ctx context.Context, args []string) error {
	fset := newFlagSet("get")
	keys := keyFlag(fset, "for an encrypted file")
	if err := c.parse(fset, c.Usage(), args); err != nil {
		return err
	}
	if fset.NArg() != 3 {
		return usagef("want REPLICA_URL, KEY and OUTPUT, got %d arguments", fset.NArg())
	}
	t, err := replicaURL(fset.Arg(0))
	if err != nil {
		return err
	}
	key, out := fset.Arg(1), fset.Arg(2)
	if _, err := os.Lstat(out); err == nil {
		return fmt.Errorf("%s exists; get never overwrites a file", out)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	store, _, err := openToRead(ctx, t, keys)
	if err != nil {
		return err
	}
	rc, _, err := store.Get(ctx, key, nil)
	if err != nil {
		return err
	}
	defer rc.Close()
	if err := durable.RemoveLeftBehind(out, ".ferry-get-"); err != nil {
		return err
	}
	tmp, err := durable.CreateBeside(out, ".ferry-get-")
	if err != nil {
		return err
	}
	done := false
	defer func() {
		if !done {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	n, err := io.Copy(tmp, rc)
	if err != nil {
		return fmt.Errorf("get %s: %w", key, err)
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	// Renamed while still open: the temporary file's lock says it is in
	// use until it has its name (see durable.CreateBeside).
	if err := os.Rename(tmp.Name(), out); err != nil {
		return err
	}
	done = true
	tmp.Close() // the data is durable under its name: a failed close loses nothing
	fmt.Fprintf(c.stdout, "%s: %d bytes\n", out, n)
	return nil
}
