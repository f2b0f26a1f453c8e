package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"

	"github.com/urfave/cli/v2"
)

// version is set at build time by `make build` and `make deb`, with
// -ldflags "-X main.version=$(git describe --tags --always --dirty)". Empty: the VCS
// revision the Go toolchain recorded (see buildVersion).
var version = ""

// versionCommand prints what a bug report needs: lnm's version, the Go toolchain that
// built it, and every module compiled in, at its version.
func versionCommand(stdout io.Writer) *cli.Command {
	return &cli.Command{
		Name:  "version",
		Usage: "print the version, the Go version and the modules lnm was built with",
		Action: func(*cli.Context) error {
			fmt.Fprintf(stdout, "lnm %s\n", buildVersion())
			fmt.Fprintf(stdout, "go  %s %s/%s\n", runtime.Version(), runtime.GOOS, runtime.GOARCH)
			bi, ok := debug.ReadBuildInfo()
			if !ok {
				return nil
			}
			fmt.Fprintln(stdout, "modules:")
			for _, m := range bi.Deps {
				if m.Replace != nil {
					m = m.Replace
				}
				fmt.Fprintf(stdout, "  %s %s\n", m.Path, m.Version)
			}
			return nil
		},
	}
}

// buildVersion is the version set at build time, else the main module's version (go
// install of a tagged release), else "devel+REVISION" from the VCS information the Go
// toolchain records, "-dirty" when the tree had changes, else "devel".
func buildVersion() string {
	if version != "" {
		return version
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "devel"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	rev, dirty := "", false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		return "devel"
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if dirty {
		rev += "-dirty"
	}
	return "devel+" + rev
}
