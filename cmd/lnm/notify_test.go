package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/lnm-project/lnm/internal/testkit"
)

// notifyMsg is one datagram lnm sent to the notify socket, with when it arrived.
type notifyMsg struct {
	text string
	at   time.Time
}

// notifySocket is a unixgram socket standing in for systemd's; the messages arrive on msgs.
func notifySocket(t *testing.T) (path string, msgs <-chan notifyMsg) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "notify.sock")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan notifyMsg, 1000)
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 4096)
		for {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			ch <- notifyMsg{string(buf[:n]), time.Now()}
		}
	}()
	t.Cleanup(func() { c.Close(); <-done })
	return path, ch
}

// TestSystemdNotify runs the real lnm under a stand-in for systemd's notify socket with a
// one-second watchdog, and checks the exact messages: READY=1 with the status line once it
// serves; RELOADING=1 with MONOTONIC_USEC then READY=1 around a SIGHUP reload and an admin
// API reload; a status note for a refused file; WATCHDOG=1 every half second while idle,
// none while a query sits in the DNS server unanswered (a stub zone whose three servers
// never answer holds it for 6 s: to the probe that is a wedged handler), kicks again once
// it is answered; STOPPING=1 on SIGTERM.
func TestSystemdNotify(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the lnm binary")
	}
	bin := buildLNM(t)
	sock, msgs := notifySocket(t)
	dir := t.TempDir()
	dnsPort, proxyPort := testkit.FreePort(t), testkit.FreePort(t)
	var dead []string
	for range 3 { // bound, never read: every query to them times out (2 s each)
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		dead = append(dead, c.LocalAddr().String())
	}
	conf := filepath.Join(dir, "lnm.conf")
	write := func(rules ...string) {
		text := fmt.Sprintf(`lnm {
    listen 127.0.0.1
    dns    %d
    proxy  %d
    parent 127.0.0.2
    admin  %s/admin.sock
    audit  %s/audit
    allow {
        %s
    }
    zone stall.test {
        forward %s
    }
}
`, dnsPort, proxyPort, dir, dir, strings.Join(rules, "\n        "), strings.Join(dead, " "))
		if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("*.azure.test")

	cmd := exec.Command(bin, "run", "--config", conf)
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+sock, "WATCHDOG_USEC=1000000")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var stderr testkit.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("lnm's log:\n%s", stderr.String())
		}
	}()

	var kicks []time.Time
	// expect returns the next message that is not a watchdog kick; it must match want.
	expect := func(step, want string) {
		t.Helper()
		timeout := time.After(20 * time.Second)
		for {
			select {
			case m := <-msgs:
				if m.text == "WATCHDOG=1" {
					kicks = append(kicks, m.at)
					continue
				}
				if !regexp.MustCompile(`^` + want + `$`).MatchString(m.text) {
					t.Fatalf("%s: got %q, want /%s/", step, m.text, want)
				}
				return
			case <-timeout:
				t.Fatalf("%s: no message matching /%s/ within 20 s", step, want)
			}
		}
	}
	// kicksFor collects kicks for d, failing on any other message.
	kicksFor := func(d time.Duration) {
		t.Helper()
		end := time.After(d)
		for {
			select {
			case m := <-msgs:
				if m.text != "WATCHDOG=1" {
					t.Fatalf("unexpected %q", m.text)
				}
				kicks = append(kicks, m.at)
			case <-end:
				return
			}
		}
	}
	status := func(rules int, note string) string {
		s := fmt.Sprintf(`STATUS=level 0, %d rules?, 3 listeners, enforce`, rules)
		if note != "" {
			s += "; " + regexp.QuoteMeta(note)
		}
		return s
	}
	reloading := `RELOADING=1\nMONOTONIC_USEC=[0-9]+`

	expect("start", `READY=1\n`+status(1, ""))
	kicksFor(1500 * time.Millisecond)
	if len(kicks) < 2 {
		t.Fatalf("%d watchdog kicks in 1.5 s of an idle box, want at least 2 (every 0.5 s)", len(kicks))
	}

	cmd.Process.Signal(syscall.SIGHUP)
	expect("SIGHUP reload", reloading)
	expect("SIGHUP reload done", `READY=1\n`+status(1, ""))

	write("*.azure.test", "api.vendor.test")
	if code, out, errOut := runCLI(t, "reload", "--config", conf); code != 0 {
		t.Fatalf("lnm reload: exit %d\n%s%s", code, out, errOut)
	}
	expect("admin API reload", reloading)
	expect("admin API reload done", `READY=1\n`+status(2, ""))

	os.WriteFile(conf, []byte("lnm {\n    bogus\n}\n"), 0o644)
	cmd.Process.Signal(syscall.SIGHUP)
	expect("refused file", status(2, "last reload refused, see the log"))
	write("*.azure.test", "api.vendor.test")

	// Wedge: a query the DNS server cannot finish for 6 s, on an otherwise idle box.
	kicks = nil
	asked := time.Now()
	answered := make(chan time.Time, 1)
	go func() {
		c := &dns.Client{Timeout: 15 * time.Second}
		c.Exchange(new(dns.Msg).SetQuestion("plc.stall.test.", dns.TypeA), fmt.Sprintf("127.0.0.1:%d", dnsPort))
		answered <- time.Now()
	}()
	kicksFor(8 * time.Second)
	var done time.Time
	select {
	case done = <-answered:
	case <-time.After(10 * time.Second):
		t.Fatal("the stub-zone query never got an answer")
	}
	var during, after int
	for _, k := range kicks {
		switch {
		case k.After(asked.Add(time.Second)) && k.Before(done.Add(-200*time.Millisecond)):
			during++
		case k.After(done):
			after++
		}
	}
	t.Logf("query held %v; kicks while held %d, after %d", done.Sub(asked).Round(time.Millisecond), during, after)
	if done.Sub(asked) < 5*time.Second {
		t.Fatalf("the query was answered after %v, want about 6 s", done.Sub(asked))
	}
	if during > 0 {
		t.Errorf("%d watchdog kicks while the DNS server's only query was stuck, want none", during)
	}
	if after == 0 {
		t.Errorf("no watchdog kick after the query was answered")
	}
	if !strings.Contains(stderr.String(), "watchdog not kicked") {
		t.Errorf("the log does not say why the watchdog was not kicked")
	}

	cmd.Process.Signal(syscall.SIGTERM)
	expect("stop", `STOPPING=1\nSTATUS=stopping`)
	select {
	case err := <-exited:
		exited <- err
		if err != nil {
			t.Errorf("lnm exited with %v after SIGTERM", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("lnm did not exit within 15 s of SIGTERM")
	}
}
