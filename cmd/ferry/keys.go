package main

import (
	"context"
	"errors"
	"flag"
	"fmt"

	"github.com/ferrydb/ferry/internal/config"
	"github.com/ferrydb/ferry/internal/objstore"
	"github.com/ferrydb/ferry/internal/seal"
	"github.com/ferrydb/ferry/internal/target"
)

// keyFiles is the -key-file flag, which may be given more than once: the
// first key writes and reads, the others only read (the old keys of a
// rotation).
type keyFiles struct {
	paths []string
	keys  []*seal.Key
}

// keyFlag adds -key-file to fs.
func keyFlag(fs *flag.FlagSet, what string) *keyFiles {
	k := &keyFiles{}
	fs.Var(k, "key-file", "read the replica's encryption key from `PATH` ("+what+"; repeat it for the old keys of a rotation)")
	return k
}

func (k *keyFiles) String() string { return fmt.Sprint(k.paths) }

// Set loads the key at once, so that a missing or loose key file is a
// usage error before anything is read or written.
func (k *keyFiles) Set(path string) error {
	if path == "" {
		return errors.New("empty path")
	}
	key, err := seal.LoadKeyFile(path)
	if err != nil {
		return err
	}
	k.paths, k.keys = append(k.paths, path), append(k.keys, key)
	return nil
}

// ring returns the keys given, nil when none was.
func (k *keyFiles) ring() (*seal.Ring, error) {
	if k == nil || len(k.keys) == 0 {
		return nil, nil
	}
	return seal.NewRing(k.keys[0], k.keys[1:]...)
}

// openToRead opens the existing replica at t with the keys given, for a
// command that reads it, and returns the keys too (nil without any).
func openToRead(ctx context.Context, t config.Target, keys *keyFiles) (objstore.Store, *seal.Ring, error) {
	ring, err := keys.ring()
	if err != nil {
		return nil, nil, usagef("-key-file: %v", err)
	}
	store, err := target.Open(ctx, config.Replica{Target: t, Keys: ring}, target.Options{Check: true, MustExist: true})
	if err != nil {
		return nil, nil, err
	}
	return store, ring, nil
}
