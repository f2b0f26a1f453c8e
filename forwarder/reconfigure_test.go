package forwarder_test

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/lnm-project/lnm/allowlist"
	"github.com/lnm-project/lnm/forwarder"
	"github.com/lnm-project/lnm/internal/testkit"
)

// openStream opens a TLS session through the forwarder and checks it works.
func openStream(t *testing.T, s *setup, sni string, ca *testkit.CA) *tls.Conn {
	t.Helper()
	c, err := tls.Dial("tcp", s.addr(), ca.Client(sni))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	alive(t, c, sni)
	s.events.next(t, forwarder.EventOpen)
	return c
}

// alive checks one round trip on an open stream.
func alive(t *testing.T, c *tls.Conn, sni string) {
	t.Helper()
	io.WriteString(c, "ping")
	buf := make([]byte, 64)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := c.Read(buf)
	if err != nil || string(buf[:n]) != sni+":ping" {
		t.Fatalf("stream to %s: %q, %v", sni, buf[:n], err)
	}
}

// reconfigure prepares cfg and commits it, as a box with this one component would.
func reconfigure(f *forwarder.Forwarder, cfg forwarder.Config) error {
	p, err := f.Prepare(cfg)
	if err != nil {
		return err
	}
	p.Commit()
	return nil
}

// noEvent checks that the forwarder reports nothing for a while: no stream was closed.
func noEvent(t *testing.T, s *setup) {
	t.Helper()
	select {
	case ev := <-s.events.ch:
		t.Errorf("unexpected event %+v", ev)
	case <-time.After(100 * time.Millisecond):
	}
}

func TestReconfigureRevokes(t *testing.T) {
	ca := testkit.NewCA(t)
	be := testkit.TLSEcho(t, "127.0.0.1:0", ca.Issue(t, "keep.example.test", "gone.example.test"))
	s := start(t, forwarder.Config{List: rules(t, "keep.example.test", "gone.example.test"), Parent: netip.MustParseAddr("127.0.0.1")}, be.Port())
	keep := openStream(t, s, "keep.example.test", ca)
	gone := openStream(t, s, "gone.example.test", ca)

	cfg := s.cfg
	cfg.List = rules(t, "keep.example.test")
	p, err := s.fwd.Prepare(cfg)
	if err != nil {
		t.Fatal(err)
	}
	noEvent(t, s) // preparing revokes nothing
	alive(t, gone, "gone.example.test")
	if n := p.Commit(); n != 1 {
		t.Errorf("Commit revoked %d streams, want 1", n)
	}
	if ev := s.events.next(t, forwarder.EventClose); ev.SNI != "gone.example.test" || ev.Reason != forwarder.ReasonRevoked {
		t.Fatalf("close event %+v, want gone.example.test revoked", ev)
	}
	gone.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := gone.Read(make([]byte, 1)); err == nil {
		t.Error("the revoked stream still reads")
	}
	alive(t, keep, "keep.example.test") // untouched
	if _, err := talk(t, s.addr(), "gone.example.test", ca, "x"); err == nil {
		t.Error("a new connection to the removed name got through")
	}
}

func TestReconfigureDrains(t *testing.T) {
	ca := testkit.NewCA(t)
	be := testkit.TLSEcho(t, "127.0.0.1:0", ca.Issue(t, "gone.example.test"))
	s := start(t, forwarder.Config{List: rules(t, "gone.example.test"), Parent: netip.MustParseAddr("127.0.0.1")}, be.Port())
	gone := openStream(t, s, "gone.example.test", ca)
	cfg := s.cfg
	cfg.List, cfg.DrainRevoked = rules(t, "other.example.test"), true
	if err := reconfigure(s.fwd, cfg); err != nil {
		t.Fatal(err)
	}
	alive(t, gone, "gone.example.test") // left to finish
	if _, err := talk(t, s.addr(), "gone.example.test", ca, "x"); err == nil {
		t.Error("a new connection to the removed name got through")
	}
}

func TestReconfigurePorts(t *testing.T) {
	ca := testkit.NewCA(t)
	be := testkit.TLSEcho(t, "127.0.0.1:0", ca.Issue(t, "a.example.test"))
	s := start(t, forwarder.Config{List: rules(t, "a.example.test"), Parent: netip.MustParseAddr("127.0.0.1")}, be.Port())
	live := openStream(t, s, "a.example.test", ca)
	before := s.fwd.Addrs()

	extra := testkit.FreePort(t)
	cfg := s.cfg
	cfg.Ports = append(cfg.Ports, forwarder.PortMap{Listen: extra, Upstream: be.Port()})
	if err := reconfigure(s.fwd, cfg); err != nil {
		t.Fatal(err)
	}
	if got, err := talk(t, fmt.Sprintf("127.0.0.1:%d", extra), "a.example.test", ca, "new"); err != nil || got != "a.example.test:new" {
		t.Fatalf("the added port: %q, %v", got, err)
	}
	if after := s.fwd.Addrs(); after[0] != before[0] {
		t.Errorf("the unchanged port moved: %v then %v", before, after)
	}
	alive(t, live, "a.example.test")

	// A port that cannot be bound fails the whole change; the running config stays.
	busy, _ := net.Listen("tcp", "127.0.0.1:0")
	defer busy.Close()
	bad := cfg
	bad.Ports = append(bad.Ports, forwarder.PortMap{Listen: uint16(busy.Addr().(*net.TCPAddr).Port), Upstream: be.Port()})
	if err := reconfigure(s.fwd, bad); err == nil {
		t.Fatal("Prepare with a busy port succeeded")
	}
	if got, err := talk(t, fmt.Sprintf("127.0.0.1:%d", extra), "a.example.test", ca, "still"); err != nil || got != "a.example.test:still" {
		t.Fatalf("after a failed change: %q, %v", got, err)
	}

	// Removing the first port closes its listener, and revokes the stream on it: the port is
	// no longer served.
	cfg.Ports = cfg.Ports[1:]
	if err := reconfigure(s.fwd, cfg); err != nil {
		t.Fatal(err)
	}
	if c, err := net.DialTimeout("tcp", s.addr(), time.Second); err == nil {
		c.Close()
		t.Error("the removed port still accepts")
	}
	for {
		ev := s.events.next(t, forwarder.EventClose)
		if ev.Port == s.port {
			if ev.Reason != forwarder.ReasonRevoked {
				t.Errorf("stream on the removed port closed with %q, want revoked", ev.Reason)
			}
			break
		}
	}
	if err := reconfigure(s.fwd, forwarder.Config{Listen: netip.MustParseAddr("127.0.0.2")}); err == nil {
		t.Error("the listen address changed while running")
	}
}

func TestLearnMode(t *testing.T) {
	ca := testkit.NewCA(t)
	be := testkit.TLSEcho(t, "127.0.0.1:0", ca.Issue(t, "unlisted.example.test"))
	s := start(t, forwarder.Config{List: rules(t, "a.example.test"), Parent: netip.MustParseAddr("127.0.0.1"), Learn: true}, be.Port())
	if got, err := talk(t, s.addr(), "unlisted.example.test", ca, "hi"); err != nil || got != "unlisted.example.test:hi" {
		t.Fatalf("learn mode blocked an unlisted name: %q, %v", got, err)
	}
	if ev := s.events.next(t, forwarder.EventOpen); ev.Verdict != forwarder.VerdictWouldDeny || ev.Reason != allowlist.ReasonNotListed || ev.Via != forwarder.ViaParent {
		t.Errorf("open event %+v, want would-deny not_listed via parent", ev)
	}
	// Back to enforce: the same name is denied.
	cfg := s.cfg
	cfg.Learn = false
	if err := reconfigure(s.fwd, cfg); err != nil {
		t.Fatal(err)
	}
	if _, err := talk(t, s.addr(), "unlisted.example.test", ca, "hi"); err == nil {
		t.Error("enforce mode let an unlisted name through")
	}
}

// An aborted config changes nothing: the stream it would revoke runs on, the port it bound
// is released, the old list still decides, and the next config can be prepared.
func TestPrepareAbort(t *testing.T) {
	ca := testkit.NewCA(t)
	be := testkit.TLSEcho(t, "127.0.0.1:0", ca.Issue(t, "gone.example.test"))
	s := start(t, forwarder.Config{List: rules(t, "gone.example.test"), Parent: netip.MustParseAddr("127.0.0.1")}, be.Port())
	gone := openStream(t, s, "gone.example.test", ca)

	extra := testkit.FreePort(t)
	cfg := s.cfg
	cfg.List = rules(t, "other.example.test")
	cfg.Ports = append(cfg.Ports, forwarder.PortMap{Listen: extra, Upstream: be.Port()})
	p, err := s.fwd.Prepare(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.fwd.Prepare(cfg); err == nil || !strings.Contains(err.Error(), "another config is prepared") {
		t.Errorf("a second Prepare before Commit or Abort: %v, want refused", err)
	}
	p.Abort()
	if n := p.Commit(); n != 0 {
		t.Errorf("Commit after Abort revoked %d streams", n)
	}
	noEvent(t, s)
	alive(t, gone, "gone.example.test")
	if got, err := talk(t, s.addr(), "gone.example.test", ca, "old"); err != nil || got != "gone.example.test:old" {
		t.Errorf("the old list after an abort: %q, %v", got, err)
	}
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", extra))
	if err != nil {
		t.Fatalf("the port bound by the aborted config is still taken: %v", err)
	}
	ln.Close()
	if err := reconfigure(s.fwd, cfg); err != nil {
		t.Fatalf("Prepare after an abort: %v", err)
	}
}

// Close releases a config still prepared, and a Commit after Close changes nothing.
func TestCloseAbortsPrepared(t *testing.T) {
	ca := testkit.NewCA(t)
	be := testkit.TLSEcho(t, "127.0.0.1:0", ca.Issue(t, "a.example.test"))
	s := start(t, forwarder.Config{List: rules(t, "a.example.test"), Parent: netip.MustParseAddr("127.0.0.1")}, be.Port())
	extra := testkit.FreePort(t)
	cfg := s.cfg
	cfg.Ports = append(cfg.Ports, forwarder.PortMap{Listen: extra, Upstream: be.Port()})
	p, err := s.fwd.Prepare(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.fwd.Close(); err != nil {
		t.Fatal(err)
	}
	p.Commit()
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", extra))
	if err != nil {
		t.Fatalf("the prepared port is still taken after Close: %v", err)
	}
	ln.Close()
	if _, err := s.fwd.Prepare(cfg); err == nil {
		t.Error("Prepare on a closed forwarder succeeded")
	}
}
