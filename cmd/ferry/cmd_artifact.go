package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ferrydb/ferry/internal/artifact"
	"github.com/ferrydb/ferry/internal/config"
	"github.com/ferrydb/ferry/internal/objstore"
	"github.com/ferrydb/ferry/internal/seal"
	"github.com/ferrydb/ferry/internal/target"
)

type artifactCmd struct{ *app }

func (*artifactCmd) Name() string { return "artifact" }
func (*artifactCmd) Summary() string {
	return "upload, download or inspect a directory stored as one artifact"
}
func (*artifactCmd) Usage() string {
	return `
Usage: ferry artifact upload DIR REPLICA_URL/KEY
       ferry artifact download REPLICA_URL/KEY DEST
       ferry artifact peek REPLICA_URL/KEY

Subcommands:
  upload     store the directory DIR as the artifact KEY
  download   verify the artifact KEY and unpack it into DEST; nothing is
             written outside DEST, whatever the artifact holds
  peek       list the artifact's manifest without downloading its content

KEY is the object's key under the replica URL's prefix, as in
s3://bucket/builds/42 or file:///srv/artifacts/builds/42.`
}

func (c *artifactCmd) Run(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return usagef("missing subcommand")
	}
	sub, args := args[0], args[1:]
	if sub == "-h" || sub == "-help" || sub == "--help" || sub == "help" {
		fmt.Fprintln(c.stdout, strings.TrimSpace(c.Usage()))
		return errHelp
	}
	var synopsis string
	var want int
	switch sub {
	case "upload":
		synopsis, want = "ferry artifact upload DIR REPLICA_URL/KEY", 2
	case "download":
		synopsis, want = "ferry artifact download REPLICA_URL/KEY DEST", 2
	case "peek":
		synopsis, want = "ferry artifact peek REPLICA_URL/KEY", 1
	default:
		return usagef("unknown subcommand %q", sub)
	}
	help := "ferry artifact " + sub + " -h"
	fs := newFlagSet("artifact " + sub)
	var lease *time.Duration
	if sub == "upload" {
		lease = fs.Duration("lease", 0, "hold a lease for `TTL` (renewed while uploading) so that only one machine uploads this KEY at a time")
		synopsis = "ferry artifact upload [-lease TTL] DIR REPLICA_URL/KEY"
	}
	keys := keyFlag(fs, "the artifact is encrypted with it")
	synopsis = strings.Replace(synopsis, " artifact "+sub+" ", " artifact "+sub+" [-key-file PATH] ", 1)
	if err := c.parse(fs, "Usage: "+synopsis+"\n\nRun 'ferry artifact -h' for what it does.", args); err != nil {
		return withHelp(err, help)
	}
	if fs.NArg() != want {
		return withHelp(usagef("want %d arguments, got %d", want, fs.NArg()), help)
	}
	urlArg := fs.Arg(0)
	if sub == "upload" {
		if err := existing(fs.Arg(0), "directory"); err != nil {
			return err
		}
		if *lease < 0 {
			return usagef("-lease must be positive")
		}
		urlArg = fs.Arg(1)
	}
	ring, err := keys.ring()
	if err != nil {
		return usagef("-key-file: %v", err)
	}
	store, key, err := openKeyURL(ctx, urlArg, ring)
	if err != nil {
		return err
	}
	switch sub {
	case "upload":
		var m artifact.Manifest
		if *lease > 0 {
			host, _ := os.Hostname()
			m, err = artifact.UploadWithLease(ctx, store, key, fs.Arg(0), fmt.Sprintf("%s:%d", host, os.Getpid()), *lease, artifact.UploadOptions{})
		} else {
			m, err = artifact.Upload(ctx, store, key, fs.Arg(0), artifact.UploadOptions{})
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "uploaded %s: %d entries, %d bytes\n", urlArg, len(m.Entries), m.FileBytes())
	case "download":
		m, err := artifact.Download(ctx, store, key, fs.Arg(1), artifact.DownloadOptions{})
		if err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "downloaded %s into %s: %d entries, %d bytes, all verified\n", urlArg, fs.Arg(1), len(m.Entries), m.FileBytes())
	case "peek":
		m, err := artifact.Peek(ctx, store, key)
		if err != nil {
			return err
		}
		return m.WriteText(c.stdout)
	}
	return nil
}

// openKeyURL opens the store that holds the object a REPLICA_URL/KEY
// argument names, and returns the key within it. The store is rooted at the
// bucket (s3) or at the key's parent directory (file), which names the same
// objects whatever part of the path the user thinks of as the replica.
func openKeyURL(ctx context.Context, arg string, ring *seal.Ring) (objstore.Store, string, error) {
	t, err := keyURL(arg)
	if err != nil {
		return nil, "", err
	}
	var key string
	switch t.Scheme {
	case "s3":
		key, t.Prefix = t.Prefix, ""
	case "file":
		key, t.Path = filepath.Base(t.Path), filepath.Dir(t.Path)
	}
	store, err := target.Open(ctx, config.Replica{Target: t, Keys: ring}, target.Options{})
	if err != nil {
		return nil, "", err
	}
	return store, key, nil
}
