package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ferrydb/ferry/internal/spool"
	"github.com/ferrydb/ferry/internal/uploader"
)

type spoolCmd struct{ *app }

func (*spoolCmd) Name() string    { return "spool" }
func (*spoolCmd) Summary() string { return "inspect a spool directory (fsck), retry refused files" }
func (*spoolCmd) Usage() string {
	return `
Usage: ferry spool fsck [-json] SPOOL_DIR
       ferry spool retry [-wait D] SPOOL_DIR

Subcommands:
  fsck   report spool entries that are too old, orphaned, duplicated or
         failed, and exit non-zero if there is one
  retry  send the files a target refused for good back to be uploaded
         again

Run 'ferry spool fsck -h' or 'ferry spool retry -h' for details.`
}

func (c *spoolCmd) Run(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return usagef("missing subcommand")
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		fmt.Fprintln(c.stdout, strings.TrimSpace(c.Usage()))
		return errHelp
	case "fsck":
		return c.fsck(ctx, args[1:])
	case "retry":
		return c.retry(args[1:])
	}
	return usagef("unknown subcommand %q", args[0])
}

func (c *spoolCmd) retry(args []string) error {
	const usage = `
Usage: ferry spool retry [-wait D] SPOOL_DIR

Sends the files a target refused for good (fsck reports them as failed,
with the store's reason) back to the files queue, once the cause is put
right: a bucket policy, a key, credentials. The next ferry to run on the
spool uploads them. Change sets a target refused stay where they are:
their replicator recorded the gap and went on from a snapshot.

With a ferry running on the spool, retry asks it to send them, and
waits up to -wait for it to say it has.`
	fs := newFlagSet("spool retry")
	wait := fs.Duration("wait", 30*time.Second, "how long to wait for a running ferry to take the request")
	if err := c.parse(fs, usage, args); err != nil {
		return withHelp(err, "ferry spool retry -h")
	}
	if fs.NArg() != 1 {
		return withHelp(usagef("want one SPOOL_DIR, got %d arguments", fs.NArg()), "ferry spool retry -h")
	}
	dir := fs.Arg(0)
	if err := existing(dir, "directory"); err != nil {
		return err
	}
	if *wait < 0 {
		return withHelp(usagef("-wait %s: want a duration of zero or more", *wait), "ferry spool retry -h")
	}
	// Open makes a spool of any directory: only one that is a spool
	// already is taken.
	rep, err := spool.Check(dir, spool.Limits{}, time.Now())
	if err != nil {
		return notASpool(dir, err)
	}
	files, others := refused(rep)
	if files == 0 {
		fmt.Fprintf(c.stdout, "no files refused for good in spool %s; %d entries stay in the failed queue\n", dir, others)
		return nil
	}
	sp, err := spool.Open(dir, spool.Options{})
	var inUse *spool.InUseError
	if errors.As(err, &inUse) {
		return c.askOwner(dir, inUse, *wait)
	}
	if err != nil {
		return err
	}
	defer sp.Close()
	moved, err := sp.RetryFailed(uploader.FilesQueue)
	if err != nil {
		return fmt.Errorf("retry failed files in spool %s: %w (%d sent back before it)", dir, err, moved)
	}
	left, err := sp.Failed()
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "%d uploads (a file, or a bundle of small files, each) sent back to be sent again; %d entries stay in the failed queue\n", moved, len(left))
	return nil
}

// askOwner asks the ferry that holds the spool in dir to send the files
// it refused for good back, and waits for it to have done so.
func (c *spoolCmd) askOwner(dir string, owner *spool.InUseError, wait time.Duration) error {
	if err := spool.RequestRetry(dir, uploader.FilesQueue); err != nil {
		return err
	}
	deadline := time.Now().Add(wait)
	for spool.RetryRequested(dir, uploader.FilesQueue) {
		if time.Now().After(deadline) {
			who := "pid unknown"
			if owner.Pid > 0 {
				who = fmt.Sprintf("pid %d", owner.Pid)
			}
			return fmt.Errorf("the ferry holding spool %s (%s) did not take the request within %s; the request stays for it to carry out", dir, who, wait)
		}
		time.Sleep(100 * time.Millisecond)
	}
	rep, err := spool.Check(dir, spool.Limits{}, time.Now())
	if err != nil {
		return err
	}
	files, others := refused(rep)
	fmt.Fprintf(c.stdout, "the running ferry sent the refused files back to be uploaded again; %d entries stay in the failed queue\n", files+others)
	return nil
}

// refused counts the entries of the failed queue rep found: the files,
// and the others (change sets).
func refused(rep spool.Report) (files, others int) {
	for _, p := range rep.Problems {
		switch {
		case p.Kind != spool.KindFailed:
		case p.From == uploader.FilesQueue:
			files++
		default:
			others++
		}
	}
	return files, others
}

func (c *spoolCmd) fsck(_ context.Context, args []string) error {
	const usage = `
Usage: ferry spool fsck [-json] SPOOL_DIR

Checks the spool in SPOOL_DIR and reports entries that are too old,
orphaned (claimed by a worker that is gone), duplicated, or moved to the
failed queue with their reasons. Exits non-zero if it finds any.

SPOOL_DIR is one spool: ROOT/files for files, where ROOT is the spool root
(-spool, spool: or $FERRY_SPOOL); for a database, .DB_NAME-ferry beside it,
or ROOT/DB_NAME-HASH when the config names a spool root.`
	fs := newFlagSet("spool fsck")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	if err := c.parse(fs, usage, args); err != nil {
		return withHelp(err, "ferry spool fsck -h")
	}
	if fs.NArg() != 1 {
		return withHelp(usagef("want one SPOOL_DIR, got %d arguments", fs.NArg()), "ferry spool fsck -h")
	}
	dir := fs.Arg(0)
	if err := existing(dir, "directory"); err != nil {
		return err
	}
	rep, err := spool.Check(dir, spool.Limits{}, time.Now())
	if err != nil {
		return notASpool(dir, err)
	}
	if *asJSON {
		enc := json.NewEncoder(c.stdout)
		enc.SetIndent("", "  ")
		// Paths and URLs print as they are: HTML escaping would turn
		// every & of an s3 URL's query into \u0026.
		enc.SetEscapeHTML(false)
		err = enc.Encode(rep)
	} else {
		err = rep.WriteText(c.stdout)
	}
	if err != nil {
		return err
	}
	if !rep.OK() {
		return fmt.Errorf("spool %s: %d problem(s) found", dir, len(rep.Problems))
	}
	return nil
}

// notASpool adds to err, the failure to check dir as a spool, what ferry
// expected there. The usual mistake is to pass the spool root that -spool
// and spool: name, which holds one spool per database and one for files:
// the spools found below dir are then listed, so the right path is one
// copy and paste away.
func notASpool(dir string, err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		// An unreadable directory is not a wrong one.
		return err
	}
	var below []string
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		sub := filepath.Join(dir, e.Name())
		if !e.IsDir() {
			continue
		}
		if _, cerr := spool.Check(sub, spool.Limits{}, time.Now()); cerr == nil {
			below = append(below, sub)
		}
	}
	if len(below) > 0 {
		return fmt.Errorf("%w; it holds spools below it: run 'ferry spool fsck' on one of %s", err, strings.Join(below, ", "))
	}
	return fmt.Errorf("%w; expected one spool: ROOT/files, a database's .DB_NAME-ferry or ROOT/DB_NAME-HASH (see 'ferry spool fsck -h')", err)
}
