package main

import (
	"context"
	"fmt"
	"strings"
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
	if err := c.parse(fs, "Usage: "+synopsis+"\n\nRun 'ferry artifact -h' for what it does.", args); err != nil {
		return withHelp(err, help)
	}
	if fs.NArg() != want {
		return withHelp(usagef("want %d arguments, got %d", want, fs.NArg()), help)
	}
	var err error
	switch sub {
	case "upload":
		if err = existing(fs.Arg(0), "directory"); err == nil {
			_, err = keyURL(fs.Arg(1))
		}
	case "download":
		_, err = keyURL(fs.Arg(0))
	case "peek":
		_, err = keyURL(fs.Arg(0))
	}
	if err != nil {
		return err
	}
	return errNotImplemented
}
