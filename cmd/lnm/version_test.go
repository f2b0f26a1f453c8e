package main

import (
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
)

func TestVersionInProcess(t *testing.T) {
	code, out, errOut := runCLI(t, "version")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	lines := strings.Split(out, "\n")
	for _, tc := range []struct {
		name string
		want *regexp.Regexp
	}{
		{"version line", regexp.MustCompile(`^lnm \S+$`)},
		{"go line", regexp.MustCompile(`^go  ` + regexp.QuoteMeta(runtime.Version()) + ` linux/` + runtime.GOARCH + `$`)},
		{"modules header", regexp.MustCompile(`^modules:$`)},
		{"a dependency with its version", regexp.MustCompile(`^  github\.com/urfave/cli/v2 v2\.\d+\.\d+$`)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, l := range lines {
				if tc.want.MatchString(l) {
					return
				}
			}
			t.Errorf("no line matches %v in:\n%s", tc.want, out)
		})
	}
}

// TestVersionFromBuild checks both sources of the version in a real binary: `make build`
// stamps `git describe`, and a plain `go build` falls back to the recorded VCS revision.
func TestVersionFromBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("builds lnm")
	}
	root := moduleRoot(t)
	describe, err := exec.Command("git", "-C", root, "describe", "--tags", "--always", "--dirty").Output()
	if err != nil {
		t.Skipf("not a git checkout: %v", err)
	}
	made := filepath.Join(t.TempDir(), "lnm")
	if out, err := exec.Command("make", "-C", root, "build", "BIN="+made).CombinedOutput(); err != nil {
		t.Fatalf("make build: %v\n%s", err, out)
	}
	plain := buildLNM(t)
	// GOFLAGS=-buildvcs=false (set on some machines) leaves no revision to fall back on.
	fallback := `devel`
	info, err := exec.Command("go", "version", "-m", plain).Output()
	if err != nil {
		t.Fatal(err)
	}
	if m := regexp.MustCompile(`vcs\.revision=([0-9a-f]{12})`).FindSubmatch(info); m != nil {
		fallback = `devel\+` + string(m[1]) + `(-dirty)?`
	}
	for _, tc := range []struct {
		name, bin string
		want      *regexp.Regexp
	}{
		{"make build: git describe", made, regexp.MustCompile(`^lnm ` + regexp.QuoteMeta(strings.TrimSpace(string(describe))) + "\n")},
		{"go build: vcs revision", plain, regexp.MustCompile(`^lnm ` + fallback + `\n`)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := exec.Command(tc.bin, "version").Output()
			if err != nil || !tc.want.Match(out) {
				t.Errorf("%s version: %v\n%s\nwant %v", tc.bin, err, out, tc.want)
			}
		})
	}
}
