package main

import (
	"context"
	"fmt"
	iofs "io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/ferrydb/ferry/internal/config"
	"github.com/ferrydb/ferry/internal/seal"
	"github.com/ferrydb/ferry/internal/target"
	"github.com/ferrydb/ferry/internal/uploader"
)

type pushCmd struct{ *app }

func (*pushCmd) Name() string    { return "push" }
func (*pushCmd) Summary() string { return "spool files for upload to a replica" }
func (*pushCmd) Usage() string {
	return `
Usage: ferry push [-key PREFIX] [-key-file PATH] [-spool DIR] [-wait] PATH... REPLICA_URL

Copies each PATH into the spool, from where it is uploaded to REPLICA_URL:
a file under its base name, a directory's files under their paths relative
to it, all below PREFIX/ with -key. Returns once the files are safely
spooled, for a running 'ferry replicate' to ship; with -wait, once every
file is durable in the replica (shipping them itself if no daemon runs).

The files go to the files spool under the spool root DIR, which must be
the one the daemon uses (its spool: key or $FERRY_SPOOL) for it to ship
them. With -key-file each file is encrypted before it is spooled: the
spool and the replica hold only ciphertext, and 'ferry artifact' or any
reader needs the same key to read it back.`
}

func (c *pushCmd) Run(ctx context.Context, args []string) error {
	fs := newFlagSet("push")
	var prefix string
	fs.Func("key", "upload under key `PREFIX` in the replica", func(v string) error {
		prefix = strings.Trim(v, "/")
		return validKeyPrefix(v)
	})
	wait := fs.Bool("wait", false, "wait until the files are durable in the replica")
	spoolFlag := fs.String("spool", "", "spool root `DIR` shared with the daemon (default $FERRY_SPOOL or ~/.local/state/ferry)")
	keys := keyFlag(fs, "encrypt the files with it")
	if err := c.parse(fs, c.Usage(), args); err != nil {
		return err
	}
	if fs.NArg() < 2 {
		return usagef("want one or more PATHs and a REPLICA_URL, got %d arguments", fs.NArg())
	}
	paths, dst := fs.Args()[:fs.NArg()-1], fs.Arg(fs.NArg()-1)
	t, err := replicaURL(dst)
	if err != nil {
		return err
	}
	files, err := collectFiles(paths, prefix)
	if err != nil {
		return err
	}
	root, err := spoolRoot(*spoolFlag, "")
	if err != nil {
		return err
	}
	ring, err := keys.ring()
	if err != nil {
		return usagef("-key-file: %v", err)
	}
	p := &pusher{app: c.app, url: t.String(), dir: filesSpool(root), files: files}
	if ring != nil {
		if err := os.MkdirAll(root, 0o700); err != nil {
			return err
		}
		sealed, cleanup, err := sealFiles(ring, files, root)
		if err != nil {
			return err
		}
		defer cleanup()
		p.files, p.sealed = sealed, true
	}
	if *wait {
		// Fail now on a missing bucket or refused credentials, not after
		// the files are spooled.
		store, err := target.Open(ctx, config.Replica{Target: t}, target.Options{Check: true})
		if err != nil {
			return err
		}
		p.store = seal.Raw(store) // what the files are, plaintext or sealed, is what is stored
	}
	return p.push(ctx, *wait)
}

// pushFile is one file to push and the key it goes to.
type pushFile struct {
	path string
	key  string
	size int64
}

// collectFiles expands paths into the regular files to push: a file goes
// under its base name, a directory's files under their paths relative to
// it, all below prefix. Anything that is not a regular file or directory
// fails the whole push before a byte is spooled.
func collectFiles(paths []string, prefix string) ([]pushFile, error) {
	var files []pushFile
	seen := map[string]string{}
	add := func(path, rel string, size int64) error {
		key := filepath.ToSlash(rel)
		if prefix != "" {
			key = prefix + "/" + key
		}
		if other, dup := seen[key]; dup {
			return fmt.Errorf("%s and %s would both upload to key %q", other, path, key)
		}
		if err := uploader.CheckKey(key); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		seen[key] = path
		files = append(files, pushFile{path: path, key: key, size: size})
		return nil
	}
	for _, arg := range paths {
		fi, err := os.Stat(arg)
		if err != nil {
			return nil, err
		}
		if !fi.IsDir() {
			if !fi.Mode().IsRegular() {
				return nil, fmt.Errorf("%s is not a regular file", arg)
			}
			if err := add(arg, filepath.Base(arg), fi.Size()); err != nil {
				return nil, err
			}
			continue
		}
		err = filepath.WalkDir(arg, func(path string, d iofs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				return nil
			}
			fi, err := os.Stat(path) // follows a symlink to what it names
			if err != nil {
				return err
			}
			if !fi.Mode().IsRegular() {
				return fmt.Errorf("%s is not a regular file", path)
			}
			rel, err := filepath.Rel(arg, path)
			if err != nil {
				return err
			}
			return add(path, rel, fi.Size())
		})
		if err != nil {
			return nil, err
		}
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no files found in %s", strings.Join(paths, ", "))
	}
	return files, nil
}

// validKeyPrefix rejects a -key that would not name one place under the
// replica: "a/../b" and "a//b" read differently on different stores.
func validKeyPrefix(s string) error {
	k := strings.Trim(s, "/")
	if k == "" {
		return fmt.Errorf("empty key prefix")
	}
	if path.Clean(k) != k {
		return fmt.Errorf("key prefix %q has empty, '.' or '..' segments", s)
	}
	if k == ".." || strings.HasPrefix(k, "../") {
		return fmt.Errorf("key prefix %q leaves the replica", s)
	}
	return nil
}
