package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// coreDNSModule is the CoreDNS release built for the run; it builds with Go 1.26.
const coreDNSModule = "github.com/coredns/coredns@v1.12.4"

// tools are the binaries the run uses besides the Debian peers on PATH.
type tools struct {
	lnm      string // built from this checkout
	coreDNS  string // empty: CoreDNS did not build and is left out
	versions []string
}

// peer is a Debian package the run needs and the file that shows it is installed.
type peer struct {
	pkg  string
	file string
}

// peers lists the Debian 12 packages: dnsmasq-base is the binary without the service, and
// nginx-light has no stream module of its own, so libnginx-mod-stream comes with it.
var peers = []peer{
	{"unbound", "/usr/sbin/unbound"},
	{"dnsmasq-base", "/usr/sbin/dnsmasq"},
	{"haproxy", "/usr/sbin/haproxy"},
	{"nginx-light", "/usr/sbin/nginx"},
	{"libnginx-mod-stream", "/usr/lib/nginx/modules/ngx_stream_module.so"},
	{"sniproxy", "/usr/sbin/sniproxy"},
	{"dnsperf", "/usr/bin/dnsperf"},
}

// installPeers apt-get installs the missing peers. Their services must not start: the run
// starts each one itself, in the foreground, on loopback. Without a policy-rc.d the run writes
// one that denies every start for the length of the install and removes it afterwards.
func installPeers() error {
	var missing []string
	for _, p := range peers {
		if _, err := os.Stat(p.file); err != nil {
			missing = append(missing, p.pkg)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("bench: missing %s; run as root or install them: apt-get install %s", strings.Join(missing, " "), strings.Join(missing, " "))
	}
	const policy = "/usr/sbin/policy-rc.d"
	if _, err := os.Stat(policy); errors.Is(err, os.ErrNotExist) {
		if err := os.WriteFile(policy, []byte("#!/bin/sh\n# written by lnm's bench-peers for the length of its install\nexit 101\n"), 0o755); err != nil {
			return fmt.Errorf("bench: %w", err)
		}
		defer os.Remove(policy)
	}
	fmt.Println("installing", strings.Join(missing, " "))
	for _, argv := range [][]string{
		{"apt-get", "update", "-qq"},
		append([]string{"apt-get", "install", "-y", "-qq", "--no-install-recommends"}, missing...),
	} {
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("bench: %s: %w: %s", strings.Join(argv, " "), err, out)
		}
	}
	return nil
}

// buildTools builds lnm from the checkout at repo and CoreDNS with go install, both into
// dir. A CoreDNS that fails to build is reported and left out. prebuilt, if set, is a
// CoreDNS binary to use instead of building one, or "off" to leave CoreDNS out.
func buildTools(repo, dir, prebuilt string) (*tools, error) {
	goBin := os.Getenv("GO")
	if goBin == "" {
		goBin = "go"
	}
	t := &tools{lnm: filepath.Join(dir, "lnm")}
	cmd := exec.Command(goBin, "build", "-o", t.lnm, "./cmd/lnm")
	cmd.Dir = repo
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("bench: building lnm: %w: %s", err, out)
	}
	if desc, err := exec.Command("git", "-C", repo, "describe", "--tags", "--always", "--dirty").Output(); err == nil {
		t.versions = append(t.versions, "lnm "+strings.TrimSpace(string(desc)))
	}
	switch {
	case prebuilt == "off":
	case prebuilt != "":
		t.coreDNS = prebuilt
	default:
		fmt.Println("building CoreDNS:", goBin, "install", coreDNSModule)
		gobin := filepath.Join(dir, "gobin")
		cmd := exec.Command(goBin, "install", coreDNSModule)
		cmd.Dir = dir // outside the repository: its go.mod must not change
		cmd.Env = append(os.Environ(), "GOBIN="+gobin, "GOFLAGS=-mod=mod", "GOWORK=off")
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Printf("CoreDNS did not build, continuing without it: %v\n%s\n", err, lastLines(string(out), 10))
		} else {
			t.coreDNS = filepath.Join(gobin, "coredns")
		}
	}
	if t.coreDNS != "" {
		if out, err := exec.Command(t.coreDNS, "-version").Output(); err == nil {
			t.versions = append(t.versions, firstLine(string(out)))
		}
	}
	for _, pkg := range []string{"unbound", "dnsmasq-base", "haproxy", "nginx-light", "sniproxy", "dnsperf"} {
		if v, err := exec.Command("dpkg-query", "-W", "-f", "${Version}", pkg).Output(); err == nil {
			t.versions = append(t.versions, pkg+" "+string(v))
		}
	}
	return t, nil
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return line
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
