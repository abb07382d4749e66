package main

import (
	"context"
	"fmt"
	"runtime"
	"runtime/debug"
)

// version is set at release time with
// -ldflags "-X main.version=v1.2.3"; otherwise it comes from the module
// version the binary was built at, or is "dev".
var version string

func buildVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

type versionCmd struct{ *app }

func (*versionCmd) Name() string { return "version" }
func (*versionCmd) Summary() string {
	return "print ferry's version and the Go version it was built with"
}
func (*versionCmd) Usage() string {
	return `
Usage: ferry version

Prints ferry's version, then the Go version, OS and architecture it was
built for.`
}

func (c *versionCmd) Run(_ context.Context, args []string) error {
	fs := newFlagSet("version")
	if err := c.parse(fs, c.Usage(), args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	_, err := fmt.Fprintf(c.stdout, "ferry %s %s %s/%s\n", buildVersion(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return err
}
