package main

import (
	"bytes"
	"context"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lnm-project/lnm/audit"
	"github.com/lnm-project/lnm/internal/testkit"
)

// waitOutput waits until the buffer holds want.
func waitOutput(t *testing.T, b *testkit.Buffer, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(b.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the output after 10s:\n%s", want, b.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestAuditFollowBoxStops(t *testing.T) {
	fixClock(t)
	fb := startFakeBox(t, &fakeBox{records: boxRecords()})
	conf := writeConfig(t, fb.socket, "off")

	code, stdout, stderr := runCLI(t, "audit", "follow", "--config", conf)
	if code != 1 || !strings.Contains(stderr, "the box at "+fb.socket+" closed the stream") {
		t.Fatalf("exit %d, want 1 when the box goes away\n%s", code, stderr)
	}
	testkit.Golden(t, "testdata/audit_follow.golden", stdout)
	// Every query a conn links to came earlier in the stream, except the evicted seq 2.
	if reqs := fb.requests(); len(reqs) != 2 || !strings.Contains(reqs[1], "seq=2") {
		t.Errorf("requests %q, want the follow and one lookup of seq 2", reqs)
	}
}

func TestAuditFollowLooksUpQueries(t *testing.T) {
	fixClock(t)
	fb := startFakeBox(t, &fakeBox{records: boxRecords()})
	conf := writeConfig(t, fb.socket, "off")

	code, stdout, stderr := runCLI(t, "audit", "follow", "--config", conf, "--kind", "conn", "--client", "198.18.3.0/24")
	if code != 1 {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	reqs := fb.requests()
	if v, _ := url.ParseQuery(reqs[0]); v.Get("kind") != "conn" || v.Get("client") != "198.18.3.0/24" {
		t.Errorf("follow sent %q", reqs[0])
	}
	// The stream holds no dns records: the links of seqs 14 and 18 (query 12) and 20
	// (query 3) are asked for, each once.
	var lookups []string
	for _, r := range reqs[1:] {
		v, _ := url.ParseQuery(r)
		lookups = append(lookups, v.Get("seq"))
	}
	if got := strings.Join(lookups, " "); got != "12 3" {
		t.Errorf("lookups of seqs %q, want 12 3", got)
	}
	for _, want := range []string{
		"query #12 A NOERROR -> 198.18.3.1 at 10:15:02.123 (57ms before)",
		"query #12 A NOERROR -> 198.18.3.1 at 10:15:02.123 (2.402s before)",
		"query #3 A NOERROR -> 198.18.3.1 at 10:08:00.000 (7m5.25s before)",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("no %q in\n%s", want, stdout)
		}
	}
}

func TestAuditFollowJSON(t *testing.T) {
	fixClock(t)
	fb := startFakeBox(t, &fakeBox{records: boxRecords()})
	conf := writeConfig(t, fb.socket, "off")
	code, stdout, stderr := runCLI(t, "audit", "follow", "--config", conf, "--json", "--verdict", "deny")
	if code != 1 {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	var want bytes.Buffer
	for _, r := range boxRecords() {
		if r.Verdict == audit.VerdictDeny || r.Verdict == audit.VerdictRefused {
			want.Write(append(r.AppendJSON(nil), '\n'))
		}
	}
	if stdout != want.String() {
		t.Errorf("--json printed\n%s\nwant\n%s", stdout, want.String())
	}
	if len(fb.requests()) != 1 {
		t.Errorf("--json made lookups: %q", fb.requests())
	}
}

// TestAuditFollowInterrupt sends the test process a real SIGINT while follow waits for records:
// follow must catch it and exit 0.
func TestAuditFollowInterrupt(t *testing.T) {
	fixClock(t)
	fb := startFakeBox(t, &fakeBox{records: boxRecords()[:3], holdFollow: true})
	conf := writeConfig(t, fb.socket, "off")

	var stdout, stderr testkit.Buffer
	done := make(chan int, 1)
	go func() {
		done <- run([]string{"lnm", "audit", "follow", "--config", conf}, &stdout, &stderr)
	}()
	// The third record is printed after follow registered for SIGINT.
	waitOutput(t, &stdout, "config   -")
	waitOutput(t, &stdout, "allow add *.vendor.test")
	if err := syscall.Kill(os.Getpid(), syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("exit %d after SIGINT, want 0\n%s", code, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("follow did not stop on SIGINT")
	}
}

// TestAuditFollowCancel stops follow through its context, as interruptContext's replacement.
func TestAuditFollowCancel(t *testing.T) {
	fixClock(t)
	ctx, cancel := context.WithCancel(context.Background())
	saved := interruptContext
	interruptContext = func(parent context.Context) (context.Context, context.CancelFunc) { return ctx, cancel }
	t.Cleanup(func() { interruptContext = saved })

	fb := startFakeBox(t, &fakeBox{holdFollow: true})
	conf := writeConfig(t, fb.socket, "off")
	var stdout, stderr testkit.Buffer
	done := make(chan int, 1)
	go func() { done <- run([]string{"lnm", "audit", "follow", "--config", conf, "--json"}, &stdout, &stderr) }()
	deadline := time.Now().Add(10 * time.Second)
	for len(fb.requests()) == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 || stdout.String() != "" {
			t.Fatalf("exit %d, stdout %q\n%s", code, stdout.String(), stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("follow did not stop")
	}
}

func TestAuditFollowNotRunning(t *testing.T) {
	socket := filepath.Join(socketDir(t), "admin.sock")
	code, stdout, stderr := runCLI(t, "audit", "follow", "--config", writeConfig(t, socket, "off"))
	if code != 1 || stdout != "" || !strings.Contains(stderr, "lnm is not running or not reachable at "+socket) {
		t.Fatalf("exit %d, stdout %q\n%s", code, stdout, stderr)
	}
	code, _, stderr = runCLI(t, "audit", "follow", "--config", writeConfig(t, socket, "off"), "--since", "1h")
	if code != 2 || !strings.Contains(stderr, "since") {
		t.Fatalf("follow took --since: exit %d\n%s", code, stderr)
	}
}
