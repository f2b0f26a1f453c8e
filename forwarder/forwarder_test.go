package forwarder_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lnm-project/lnm/allowlist"
	"github.com/lnm-project/lnm/clienthello"
	"github.com/lnm-project/lnm/forwarder"
	"github.com/lnm-project/lnm/internal/testkit"
)

// TestMain fails the package when any test leaves a goroutine running.
func TestMain(m *testing.M) { testkit.Main(m) }

func rules(t testing.TB, lines ...string) *allowlist.List {
	t.Helper()
	var rs []allowlist.Rule
	for _, l := range lines {
		f := strings.Fields(l)
		r, err := allowlist.ParseRule(f[0], f[1:])
		if err != nil {
			t.Fatal(err)
		}
		r.Origin = l
		rs = append(rs, r)
	}
	l, err := allowlist.New(rs)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// events collects a forwarder's events.
type events struct {
	mu   sync.Mutex
	list []forwarder.Event
	fail bool
	ch   chan forwarder.Event
}

func newEvents() *events { return &events{ch: make(chan forwarder.Event, 100)} }

func (e *events) add(ev forwarder.Event) error {
	e.mu.Lock()
	e.list = append(e.list, ev)
	fail := e.fail
	e.mu.Unlock()
	e.ch <- ev
	if fail && ev.Kind == forwarder.EventOpen {
		return errors.New("audit: disk full")
	}
	return nil
}

// failOpens makes every open event's record fail, as a full audit disk would.
func (e *events) failOpens(fail bool) {
	e.mu.Lock()
	e.fail = fail
	e.mu.Unlock()
}

// next waits for the next event of the given kind.
func (e *events) next(t testing.TB, kind forwarder.EventKind) forwarder.Event {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case ev := <-e.ch:
			if ev.Kind == kind {
				return ev
			}
		case <-timeout:
			t.Fatalf("no %s event within 5s", kind)
		}
	}
}

type setup struct {
	cfg    forwarder.Config
	fwd    *forwarder.Forwarder
	events *events
	port   uint16 // the proxy port devices dial
}

// start runs a forwarder on 127.0.0.1 whose first proxy port is a fresh free port mapped to
// upstreamPort, and checks that it leaves no goroutine behind.
func start(t *testing.T, cfg forwarder.Config, upstreamPort uint16) *setup {
	t.Helper()
	testkit.NoLeaks(t)
	s := &setup{events: newEvents(), port: testkit.FreePort(t)}
	cfg.Listen = netip.MustParseAddr("127.0.0.1")
	cfg.Ports = append([]forwarder.PortMap{{Listen: s.port, Upstream: upstreamPort}}, cfg.Ports...)
	cfg.OnEvent = s.events.add
	f, err := forwarder.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Start(); err != nil {
		t.Fatal(err)
	}
	s.cfg, s.fwd = cfg, f
	t.Cleanup(func() {
		if err := f.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		f.Close() // idempotent
	})
	return s
}

func (s *setup) addr() string { return fmt.Sprintf("127.0.0.1:%d", s.port) }

// talk opens a TLS session for sni through the forwarder, sends msg and returns the reply.
func talk(t testing.TB, addr, sni string, ca *testkit.CA, msg string) (string, error) {
	t.Helper()
	c, err := tls.Dial("tcp", addr, ca.Client(sni))
	if err != nil {
		return "", err
	}
	defer c.Close()
	if _, err := io.WriteString(c, msg); err != nil {
		return "", err
	}
	buf := make([]byte, 4096)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := c.Read(buf)
	return string(buf[:n]), err
}

func TestForwardThroughParent(t *testing.T) {
	ca := testkit.NewCA(t)
	be := testkit.TLSEcho(t, "127.0.0.1:0", ca.Issue(t, "api.azure.test", "blocked.evil.test", "mqtt.vendor.test"))
	s := start(t, forwarder.Config{
		List:   rules(t, "*.azure.test", "mqtt.vendor.test 8883"),
		Parent: netip.MustParseAddr("127.0.0.1"),
	}, be.Port())

	t.Run("allowed", func(t *testing.T) {
		got, err := talk(t, s.addr(), "api.azure.test", ca, "hello")
		if err != nil || got != "api.azure.test:hello" {
			t.Fatalf("reply %q, %v", got, err)
		}
		open := s.events.next(t, forwarder.EventOpen)
		if open.SNI != "api.azure.test" || open.Via != forwarder.ViaParent || open.Rule.Origin != "*.azure.test" {
			t.Errorf("open event %+v", open)
		}
		if open.Upstream.Port() != be.Port() || open.HelloSize < 1400 {
			t.Errorf("upstream %v, hello size %d (Go's default X25519MLKEM768 share alone is 1216 bytes)", open.Upstream, open.HelloSize)
		}
		closed := s.events.next(t, forwarder.EventClose)
		if closed.ID != open.ID || closed.BytesUp < int64(open.HelloSize) || closed.BytesDown == 0 {
			t.Errorf("close event %+v", closed)
		}
	})
	t.Run("not listed", func(t *testing.T) {
		_, err := talk(t, s.addr(), "blocked.evil.test", ca, "x")
		if err == nil || !strings.Contains(err.Error(), "access denied") {
			t.Fatalf("want a TLS access_denied alert, got %v", err)
		}
		if ev := s.events.next(t, forwarder.EventDeny); ev.Reason != allowlist.ReasonNotListed || ev.SNI != "blocked.evil.test" {
			t.Errorf("deny event %+v", ev)
		}
	})
	t.Run("wrong port", func(t *testing.T) {
		_, err := talk(t, s.addr(), "mqtt.vendor.test", ca, "x")
		if err == nil || !strings.Contains(err.Error(), "access denied") {
			t.Fatalf("want a TLS access_denied alert, got %v", err)
		}
		if ev := s.events.next(t, forwarder.EventDeny); ev.Reason != allowlist.ReasonPortNotAllowed || ev.Rule == nil {
			t.Errorf("deny event %+v", ev)
		}
	})
	for _, sni := range be.Seen() {
		if sni != "api.azure.test" {
			t.Errorf("backend saw a connection for %q, which the box should have stopped", sni)
		}
	}
}

func TestClassicalHello(t *testing.T) {
	ca := testkit.NewCA(t)
	be := testkit.TLSEcho(t, "127.0.0.1:0", ca.Issue(t, "api.azure.test"))
	s := start(t, forwarder.Config{List: rules(t, "*.azure.test"), Parent: netip.MustParseAddr("127.0.0.1")}, be.Port())
	c, err := tls.Dial("tcp", s.addr(), &tls.Config{ServerName: "api.azure.test", RootCAs: ca.Pool,
		CurvePreferences: []tls.CurveID{tls.X25519}, MaxVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if ev := s.events.next(t, forwarder.EventOpen); ev.HelloSize > 1000 {
		t.Errorf("classical hello of %d bytes; want a small one", ev.HelloSize)
	}
}

func TestSourceNotAllowed(t *testing.T) {
	s := start(t, forwarder.Config{
		List:    rules(t, ".example.test"),
		Sources: []netip.Prefix{netip.MustParsePrefix("198.18.3.0/24")},
		Parent:  netip.MustParseAddr("127.0.0.1"),
	}, 1)
	// The box resets the connection at once: either the dial or the first read fails.
	if c, err := net.Dial("tcp", s.addr()); err == nil {
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if n, err := c.Read(make([]byte, 1)); err == nil {
			t.Fatalf("read %d bytes from a box that should close at once", n)
		}
	}
	if ev := s.events.next(t, forwarder.EventDeny); ev.Reason != allowlist.ReasonSourceNotAllowed {
		t.Errorf("deny event %+v", ev)
	}
}

// rawHello records the bytes a Go TLS client sends first.
func rawHello(t testing.TB, sni string) []byte {
	t.Helper()
	a, b := net.Pipe()
	go func() {
		tls.Client(a, &tls.Config{ServerName: sni}).Handshake()
	}()
	defer a.Close()
	defer b.Close()
	var out []byte
	buf := make([]byte, 64<<10)
	for {
		b.SetReadDeadline(time.Now().Add(time.Second))
		n, err := b.Read(buf)
		out = append(out, buf[:n]...)
		if _, h, err := clienthello.Read(bytes.NewReader(out), clienthello.MaxSize); err == nil && h.SNI != "" {
			return out
		}
		if err != nil {
			t.Fatalf("recording a hello: %v", err)
		}
	}
}

// plainBackend reads everything until EOF, then answers with what it read and closes.
func plainBackend(t testing.TB) (port uint16, got chan []byte) {
	t.Helper()
	got = make(chan []byte, 10)
	s := testkit.Serve(t, "127.0.0.1:0", func(c net.Conn) {
		b, _ := io.ReadAll(c)
		fmt.Fprintf(c, "read %d bytes", len(b))
		got <- b
	})
	return s.Port(), got
}

func TestReplayByteAtATimeAndHalfClose(t *testing.T) {
	port, got := plainBackend(t)
	s := start(t, forwarder.Config{List: rules(t, "opc.plant.test"), Parent: netip.MustParseAddr("127.0.0.1")}, port)
	hello := rawHello(t, "opc.plant.test")
	payload := append(append([]byte(nil), hello...), "after the hello"...)

	c, err := net.Dial("tcp", s.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := range payload { // one byte per segment
		if _, err := c.Write(payload[i : i+1]); err != nil {
			t.Fatal(err)
		}
	}
	// Before the upstream answers, a FIN means the device gave up (a TLS client cannot
	// finish a handshake it has closed its side of); once spliced, it is passed on.
	s.events.next(t, forwarder.EventOpen)
	c.(*net.TCPConn).CloseWrite() // the backend sees EOF only if the box passes the FIN on
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	reply, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("read %d bytes", len(payload)); string(reply) != want {
		t.Errorf("reply %q, want %q", reply, want)
	}
	if b := <-got; !bytes.Equal(b, payload) {
		t.Errorf("backend got %d bytes, not exactly the %d the device sent", len(b), len(payload))
	}
	if ev := s.events.next(t, forwarder.EventClose); ev.BytesUp != int64(len(payload)) || ev.Reason != forwarder.ReasonEOF {
		t.Errorf("close event %+v", ev)
	}
}

func TestHelloFailures(t *testing.T) {
	s := start(t, forwarder.Config{
		List:         rules(t, ".example.test"),
		Parent:       netip.MustParseAddr("127.0.0.1"),
		HelloTimeout: 300 * time.Millisecond,
	}, 1)
	hello := rawHello(t, "www.example.test")
	for _, tc := range []struct {
		name       string
		reason     allowlist.Reason
		send       []byte
		closeWrite bool
	}{
		{"http", forwarder.ReasonNotTLS, []byte("GET / HTTP/1.1\r\nHost: www.example.test\r\n\r\n"), false},
		{"zeros", forwarder.ReasonNotTLS, make([]byte, 100), false},
		{"silent", forwarder.ReasonHelloTimeout, nil, false},
		{"slow header", forwarder.ReasonHelloTimeout, hello[:3], false},
		{"half a hello then FIN", forwarder.ReasonClientClosed, hello[:len(hello)/2], true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", s.addr())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.Write(tc.send)
			if tc.closeWrite {
				c.(*net.TCPConn).CloseWrite()
			}
			if ev := s.events.next(t, forwarder.EventDeny); ev.Reason != tc.reason {
				t.Errorf("deny reason %q, want %q", ev.Reason, tc.reason)
			}
		})
	}
}

// resolverFunc answers lookups from a table; the real upstream client is tested in package
// resolver and end to end.
type resolverFunc func(allowlist.Name) ([]netip.Addr, error)

func (f resolverFunc) Lookup(_ context.Context, n allowlist.Name) ([]netip.Addr, error) { return f(n) }

func TestDirectRefusesInsideAddresses(t *testing.T) {
	ca := testkit.NewCA(t)
	be := testkit.TLSEcho(t, "127.0.0.1:0", ca.Issue(t, "rebind.example.test", "gone.example.test", "fixed.example.test"))
	s := start(t, forwarder.Config{
		List: rules(t, "rebind.example.test", "gone.example.test",
			fmt.Sprintf("fixed.example.test to 127.0.0.1:%d", be.Port())),
		Resolver: resolverFunc(func(n allowlist.Name) ([]netip.Addr, error) {
			if n == "gone.example.test" {
				return nil, errors.New("NXDOMAIN")
			}
			return []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("169.254.169.254")}, nil
		}),
	}, be.Port())

	if _, err := talk(t, s.addr(), "rebind.example.test", ca, "x"); err == nil {
		t.Fatal("a name resolving to loopback and link-local was forwarded")
	}
	if ev := s.events.next(t, forwarder.EventDeny); ev.Reason != forwarder.ReasonPrivateTarget {
		t.Errorf("deny event %+v", ev)
	}
	if _, err := talk(t, s.addr(), "gone.example.test", ca, "x"); err == nil {
		t.Fatal("an unresolvable name was forwarded")
	}
	if ev := s.events.next(t, forwarder.EventDeny); ev.Reason != forwarder.ReasonResolveFailed {
		t.Errorf("deny event %+v", ev)
	}
	// A rule's explicit `to` may point inside: the operator said so.
	if got, err := talk(t, s.addr(), "fixed.example.test", ca, "hi"); err != nil || got != "fixed.example.test:hi" {
		t.Fatalf("to-rule: %q, %v", got, err)
	}
	if ev := s.events.next(t, forwarder.EventOpen); ev.Via != forwarder.ViaTo {
		t.Errorf("open event via %q, want to", ev.Via)
	}
}

func TestParentDown(t *testing.T) {
	s := start(t, forwarder.Config{List: rules(t, "a.example.test"), Parent: netip.MustParseAddr("127.0.0.1")}, testkit.FreePort(t))
	ca := testkit.NewCA(t)
	if _, err := talk(t, s.addr(), "a.example.test", ca, "x"); err == nil {
		t.Fatal("handshake succeeded with the parent down")
	}
	if ev := s.events.next(t, forwarder.EventDeny); ev.Reason != forwarder.ReasonParentFailed {
		t.Errorf("deny event %+v", ev)
	}
}

func TestTCPRoute(t *testing.T) {
	port, got := plainBackend(t)
	routePort := testkit.FreePort(t)
	s := start(t, forwarder.Config{
		Parent: netip.MustParseAddr("127.0.0.1"),
		Routes: []forwarder.Route{{Port: routePort, To: allowlist.Target{Addr: netip.MustParseAddr("127.0.0.1"), Port: port}}},
	}, 1)
	c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", routePort))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "MQTT CONNECT")
	c.(*net.TCPConn).CloseWrite()
	reply, _ := io.ReadAll(c)
	if string(reply) != "read 12 bytes" || string(<-got) != "MQTT CONNECT" {
		t.Errorf("reply %q", reply)
	}
	if ev := s.events.next(t, forwarder.EventClose); ev.Via != forwarder.ViaTCP || ev.BytesUp != 12 {
		t.Errorf("close event %+v", ev)
	}
}

func TestIdleTimeout(t *testing.T) {
	ca := testkit.NewCA(t)
	be := testkit.TLSEcho(t, "127.0.0.1:0", ca.Issue(t, "a.example.test"))
	s := start(t, forwarder.Config{
		List: rules(t, "a.example.test"), Parent: netip.MustParseAddr("127.0.0.1"),
		IdleTimeout: 200 * time.Millisecond,
	}, be.Port())
	c, err := tls.Dial("tcp", s.addr(), &tls.Config{ServerName: "a.example.test", RootCAs: ca.Pool})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Traffic for longer than the idle timeout keeps the stream up.
	for i := 0; i < 5; i++ {
		io.WriteString(c, "ping")
		c.Read(make([]byte, 100))
		time.Sleep(100 * time.Millisecond)
	}
	ev := s.events.next(t, forwarder.EventClose)
	if ev.Reason != forwarder.ReasonIdleTimeout {
		t.Errorf("close reason %q, want idle_timeout", ev.Reason)
	}
	if ev.Duration < 500*time.Millisecond {
		t.Errorf("stream closed after %v, while still active", ev.Duration)
	}
}

// A port with its own idle timeout closes its idle streams on that timeout; the other
// ports keep the box's.
func TestIdleTimeoutPerPort(t *testing.T) {
	ca := testkit.NewCA(t)
	be := testkit.TLSEcho(t, "127.0.0.1:0", ca.Issue(t, "a.example.test"))
	short := testkit.FreePort(t)
	s := start(t, forwarder.Config{
		List: rules(t, "a.example.test"), Parent: netip.MustParseAddr("127.0.0.1"),
		Ports:        []forwarder.PortMap{{Listen: short, Upstream: be.Port()}},
		IdleTimeout:  time.Hour,
		IdleTimeouts: map[uint16]time.Duration{short: 150 * time.Millisecond},
	}, be.Port())
	open := func(port uint16) *tls.Conn {
		c, err := tls.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port), ca.Client("a.example.test"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		io.WriteString(c, "ping")
		c.Read(make([]byte, 100))
		return c
	}
	long := open(s.port)
	open(short)
	ev := s.events.next(t, forwarder.EventClose)
	if ev.Reason != forwarder.ReasonIdleTimeout || ev.Port != short {
		t.Fatalf("close on port %d reason %q, want port %d idle_timeout", ev.Port, ev.Reason, short)
	}
	// The stream on the box's timeout is still up.
	io.WriteString(long, "still")
	long.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 100)
	if n, err := long.Read(buf); err != nil || string(buf[:n]) != "a.example.test:still" {
		t.Fatalf("stream on the default timeout: %q, %v", buf[:n], err)
	}
}

func TestCloseDrainsThenCuts(t *testing.T) {
	ca := testkit.NewCA(t)
	be := testkit.TLSEcho(t, "127.0.0.1:0", ca.Issue(t, "a.example.test"))
	s := start(t, forwarder.Config{
		List: rules(t, "a.example.test"), Parent: netip.MustParseAddr("127.0.0.1"),
		DrainTimeout: 200 * time.Millisecond,
	}, be.Port())
	c, err := tls.Dial("tcp", s.addr(), &tls.Config{ServerName: "a.example.test", RootCAs: ca.Pool})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s.events.next(t, forwarder.EventOpen)
	begin := time.Now()
	s.fwd.Close()
	if took := time.Since(begin); took > 2*time.Second {
		t.Errorf("Close took %v with a drain timeout of 200ms", took)
	}
	if ev := s.events.next(t, forwarder.EventClose); ev.Reason != forwarder.ReasonShutdown {
		t.Errorf("close reason %q, want shutdown", ev.Reason)
	}
	if _, err := net.DialTimeout("tcp", s.addr(), time.Second); err == nil {
		t.Error("the proxy port still accepts after Close")
	}
}

func TestPendingCap(t *testing.T) {
	ca := testkit.NewCA(t)
	be := testkit.TLSEcho(t, "127.0.0.1:0", ca.Issue(t, "a.example.test"))
	s := start(t, forwarder.Config{
		List: rules(t, "a.example.test"), Parent: netip.MustParseAddr("127.0.0.1"),
		MaxPendingPerSrc: 3,
	}, be.Port())
	var silent []net.Conn
	for range 3 {
		c, err := net.Dial("tcp", s.addr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		silent = append(silent, c)
	}
	// The fourth silent connection from the same address is over the cap.
	c, err := net.Dial("tcp", s.addr())
	if err == nil {
		defer c.Close()
	}
	if ev := s.events.next(t, forwarder.EventDeny); ev.Reason != forwarder.ReasonTooManyPending {
		t.Fatalf("deny reason %q, want %s", ev.Reason, forwarder.ReasonTooManyPending)
	}
	// Once one pending connection goes away, a real client gets through again.
	silent[0].Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got, err := talk(t, s.addr(), "a.example.test", ca, "hi")
		if err == nil && got == "a.example.test:hi" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no recovery after the flood: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestFailsClosedWhenOpenCannotBeRecorded(t *testing.T) {
	port, got := plainBackend(t)
	s := start(t, forwarder.Config{List: rules(t, "a.example.test"), Parent: netip.MustParseAddr("127.0.0.1")}, port)
	s.events.failOpens(true)
	hello := rawHello(t, "a.example.test")
	c, err := net.Dial("tcp", s.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write(append(hello, "secret"...))
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	reply, _ := io.ReadAll(c)
	if len(reply) != 0 {
		t.Errorf("the device got %q through a stream that could not be recorded", reply)
	}
	if ev := s.events.next(t, forwarder.EventClose); ev.Reason != forwarder.ReasonAuditUnavailable {
		t.Errorf("close reason %q, want %s", ev.Reason, forwarder.ReasonAuditUnavailable)
	}
	select {
	case b := <-got:
		if bytes.Contains(b, []byte("secret")) {
			t.Errorf("the upstream received the device's data: %q", b)
		}
	case <-time.After(time.Second):
	}
}

// A device that gives up while the box dials upstream cancels the dial at once, rather than
// holding a socket and a dial for DialTimeout, and leaves one record: a deny, client_closed.
func TestClientLeavesDuringDial(t *testing.T) {
	dialing := make(chan struct{}, 1)
	cancelled := make(chan time.Duration, 1)
	s := start(t, forwarder.Config{
		List:        rules(t, "a.example.test"),
		Parent:      netip.MustParseAddr("127.0.0.1"),
		DialTimeout: time.Minute,
		Dial: func(ctx context.Context, network, address string) (net.Conn, error) {
			began := time.Now()
			dialing <- struct{}{}
			<-ctx.Done() // an upstream that never answers
			cancelled <- time.Since(began)
			return nil, ctx.Err()
		},
	}, 9)
	c, err := net.Dial("tcp", s.addr())
	if err != nil {
		t.Fatal(err)
	}
	c.Write(rawHello(t, "a.example.test"))
	select {
	case <-dialing:
	case <-time.After(5 * time.Second):
		t.Fatal("the box never dialed")
	}
	c.Close()
	select {
	case d := <-cancelled:
		if d > 2*time.Second {
			t.Errorf("the dial was cancelled %v after it began", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the dial went on after the device left")
	}
	ev := s.events.next(t, forwarder.EventDeny)
	if ev.Reason != forwarder.ReasonClientClosed || ev.SNI != "a.example.test" {
		t.Errorf("deny %+v, want reason %s", ev, forwarder.ReasonClientClosed)
	}
	s.events.mu.Lock()
	n := len(s.events.list)
	s.events.mu.Unlock()
	if n != 1 {
		t.Errorf("%d events for one connection, want 1", n)
	}
}

// Bytes a device sends while the box dials (TLS 1.3 early data, say) follow the hello
// upstream, in order.
func TestEarlyBytesFollowHello(t *testing.T) {
	port, got := plainBackend(t)
	var d net.Dialer
	s := start(t, forwarder.Config{
		List:   rules(t, "a.example.test"),
		Parent: netip.MustParseAddr("127.0.0.1"),
		Dial: func(ctx context.Context, network, address string) (net.Conn, error) {
			time.Sleep(200 * time.Millisecond) // a slow upstream, so the early bytes arrive first
			return d.DialContext(ctx, network, address)
		},
	}, port)
	hello := rawHello(t, "a.example.test")
	c, err := net.Dial("tcp", s.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write(hello)
	time.Sleep(50 * time.Millisecond)
	c.Write([]byte("early data"))
	s.events.next(t, forwarder.EventOpen)
	c.Write([]byte(", then the rest"))
	c.(*net.TCPConn).CloseWrite()
	want := append(append([]byte(nil), hello...), "early data, then the rest"...)
	select {
	case b := <-got:
		if !bytes.Equal(b, want) {
			t.Errorf("upstream got %q after the hello, want %q", b[min(len(b), len(hello)):], want[len(hello):])
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the upstream got nothing")
	}
}

// A box out of file descriptors says so: the deny names its own exhaustion, not the upstream.
func TestDialOutOfDescriptors(t *testing.T) {
	dials := 0
	s := start(t, forwarder.Config{
		List:   rules(t, "a.example.test"),
		Parent: netip.MustParseAddr("127.0.0.1"),
		Dial: func(ctx context.Context, network, address string) (net.Conn, error) {
			dials++
			return nil, &net.OpError{Op: "dial", Net: network, Err: os.NewSyscallError("socket", syscall.EMFILE)}
		},
	}, 9)
	c, err := net.Dial("tcp", s.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write(rawHello(t, "a.example.test"))
	ev := s.events.next(t, forwarder.EventDeny)
	if ev.Reason != forwarder.ReasonNoDescriptors || dials != 1 {
		t.Errorf("deny %s after %d dials, want %s after 1", ev.Reason, dials, forwarder.ReasonNoDescriptors)
	}
}

// A rule's `private` lets its name resolve inside the plant (RFC 1918, ULA, CGNAT), never to
// loopback, link-local or the box. The dial is caught before it leaves this host: the test
// records the address the forwarder asked for and connects to the loopback backend instead.
func TestPrivateRule(t *testing.T) {
	ca := testkit.NewCA(t)
	be := testkit.TLSEcho(t, "127.0.0.1:0", ca.Issue(t, "historian.plant.test", "public.example.test"))
	var mu sync.Mutex
	var dialed []string
	s := start(t, forwarder.Config{
		List: rules(t, "historian.plant.test private", "public.example.test"),
		Resolver: resolverFunc(func(n allowlist.Name) ([]netip.Addr, error) {
			return []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("169.254.0.9"), netip.MustParseAddr("10.20.0.5")}, nil
		}),
		Dial: func(ctx context.Context, network, address string) (net.Conn, error) {
			mu.Lock()
			dialed = append(dialed, address)
			mu.Unlock()
			var d net.Dialer
			return d.DialContext(ctx, network, be.Addr().String())
		},
	}, be.Port())
	if got, err := talk(t, s.addr(), "historian.plant.test", ca, "hi"); err != nil || got != "historian.plant.test:hi" {
		t.Fatalf("private rule: %q, %v", got, err)
	}
	if ev := s.events.next(t, forwarder.EventOpen); ev.Via != forwarder.ViaDirect || ev.Upstream.Addr() != netip.MustParseAddr("10.20.0.5") {
		t.Errorf("open event via %q to %v, want direct to 10.20.0.5", ev.Via, ev.Upstream)
	}
	if _, err := talk(t, s.addr(), "public.example.test", ca, "x"); err == nil {
		t.Fatal("a rule without private dialed an inside address")
	}
	if ev := s.events.next(t, forwarder.EventDeny); ev.Reason != forwarder.ReasonPrivateTarget {
		t.Errorf("deny event %+v", ev)
	}
	mu.Lock()
	defer mu.Unlock()
	if want := fmt.Sprintf("10.20.0.5:%d", be.Port()); len(dialed) != 1 || dialed[0] != want {
		t.Errorf("dialed %v, want only %s", dialed, want)
	}
}
