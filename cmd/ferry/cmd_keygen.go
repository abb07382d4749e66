package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/ferrydb/ferry/internal/seal"
)

type keygenCmd struct{ *app }

func (*keygenCmd) Name() string    { return "keygen" }
func (*keygenCmd) Summary() string { return "make an encryption key file" }
func (*keygenCmd) Usage() string {
	return `
Usage: ferry keygen -o PATH

Writes a new encryption key to PATH, readable by its owner only, and prints
the key's id. Name the file under encryption: key-file in the config, or
give it with -key-file. Keep a copy somewhere other than the bucket: a
replica encrypted with a lost key cannot be read by anyone, ferry included.
The key itself is never printed or logged.`
}

func (c *keygenCmd) Run(ctx context.Context, args []string) error {
	fset := newFlagSet("keygen")
	out := fset.String("o", "", "write the key to `PATH`, which must not exist")
	if err := c.parse(fset, c.Usage(), args); err != nil {
		return err
	}
	switch {
	case fset.NArg() != 0:
		return usagef("want no arguments, got %d", fset.NArg())
	case *out == "":
		return usagef("-o PATH is required: a key printed to a terminal ends up in its scrollback")
	}
	text, id, err := seal.Generate(time.Now())
	if err != nil {
		return err
	}
	f, err := os.OpenFile(*out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%s exists; keygen never overwrites a key", *out)
	}
	if err != nil {
		return err
	}
	if _, err := f.WriteString(text); err != nil {
		f.Close()
		os.Remove(*out)
		return fmt.Errorf("write %s: %w", *out, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(*out)
		return fmt.Errorf("write %s: %w", *out, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", *out, err)
	}
	fmt.Fprintf(c.stdout, "key %s written to %s\n", id, *out)
	return nil
}
