package forwarder_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lnm-project/lnm/allowlist"
	"github.com/lnm-project/lnm/forwarder"
	"github.com/lnm-project/lnm/internal/testkit"
)

// blackhole returns a loopback port whose SYNs get no answer: a listener with a backlog of
// zero that never accepts, its queue filled, so the kernel drops what comes next.
func blackhole(t *testing.T) uint16 {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", sa.(*unix.SockaddrInet4).Port)
	for i := 0; ; i++ {
		if i == 20 {
			t.Skip("LOUD SKIP: a listener with a full queue still answered 20 SYNs; no blackhole on this kernel")
		}
		c, err := net.DialTimeout("tcp", addr, 500*time.Millisecond)
		if err != nil {
			break // the queue is full: this SYN went unanswered
		}
		t.Cleanup(func() { c.Close() })
	}
	return uint16(sa.(*unix.SockaddrInet4).Port)
}

// TestCase16UpstreamFaults is the faults catalog's case 16 for what was not covered: a
// destination that never answers the SYN (a real blackhole, not a fake dialer) ends at the
// dial timeout; a destination that accepts and then says nothing holds the device only until
// the idle timer; a device that leaves while its name is being resolved cancels the lookup.
// Each ends with exactly one record of its outcome.
func TestCase16UpstreamFaults(t *testing.T) {
	ca := testkit.NewCA(t)

	t.Run("blackhole", func(t *testing.T) {
		const dialTimeout = 500 * time.Millisecond
		hole := blackhole(t)
		s := start(t, forwarder.Config{
			List:        rules(t, fmt.Sprintf("hole.example.test to 127.0.0.1:%d", hole)),
			DialTimeout: dialTimeout,
		}, 9)
		began := time.Now()
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 30 * time.Second}, "tcp", s.addr(), ca.Client("hole.example.test"))
		if err == nil {
			c.Close()
			t.Fatal("the handshake went through to a blackhole")
		}
		took := time.Since(began)
		ev := s.events.nextWithin(t, forwarder.EventDeny, 30*time.Second)
		if ev.Reason != forwarder.ReasonUpstreamFailed || ev.SNI != "hole.example.test" {
			t.Errorf("deny %+v, want %s", ev, forwarder.ReasonUpstreamFailed)
		}
		if took < dialTimeout {
			t.Errorf("the device was let go after %v, before the %v dial timeout", took, dialTimeout)
		}
		onlyEvents(t, s, 1)
	})

	t.Run("accepts then stalls", func(t *testing.T) {
		// The destination takes the connection and the hello, and never answers.
		stall := testkit.Serve(t, "127.0.0.1:0", func(c net.Conn) { io.Copy(io.Discard, c) })
		s := start(t, forwarder.Config{
			List:        rules(t, fmt.Sprintf("stall.example.test to 127.0.0.1:%d", stall.Port())),
			IdleTimeout: time.Second,
		}, 9)
		raw, err := net.Dial("tcp", s.addr())
		if err != nil {
			t.Fatal(err)
		}
		defer raw.Close()
		raw.SetDeadline(time.Now().Add(30 * time.Second))
		c := tls.Client(raw, ca.Client("stall.example.test"))
		if err := c.Handshake(); err == nil {
			t.Fatal("a handshake with a silent server finished")
		} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatalf("the device waited 30 s: the box never closed the stalled stream")
		}
		open := s.events.nextWithin(t, forwarder.EventOpen, 30*time.Second)
		closed := s.events.nextWithin(t, forwarder.EventClose, 30*time.Second)
		if open.Via != forwarder.ViaTo || closed.ID != open.ID || closed.Reason != forwarder.ReasonIdleTimeout || closed.BytesDown != 0 {
			t.Errorf("open %+v, close %+v; want the stream closed idle_timeout with nothing sent down", open, closed)
		}
		onlyEvents(t, s, 2)
	})

	t.Run("device leaves during resolve", func(t *testing.T) {
		resolving := make(chan struct{}, 1)
		cancelled := make(chan struct{}, 1)
		s := start(t, forwarder.Config{
			List: rules(t, "slowdns.example.test"),
			Resolver: resolverCtxFunc(func(ctx context.Context, _ allowlist.Name) ([]netip.Addr, error) {
				resolving <- struct{}{}
				<-ctx.Done() // a resolver that never answers
				cancelled <- struct{}{}
				return nil, ctx.Err()
			}),
			DialTimeout: time.Minute,
		}, 443)
		c, err := net.Dial("tcp", s.addr())
		if err != nil {
			t.Fatal(err)
		}
		c.Write(rawHello(t, "slowdns.example.test"))
		select {
		case <-resolving:
		case <-time.After(30 * time.Second):
			t.Fatal("the box never resolved the name")
		}
		c.(*net.TCPConn).SetLinger(0) // the device aborts: RST
		c.Close()
		select {
		case <-cancelled:
		case <-time.After(30 * time.Second):
			t.Fatal("the lookup went on after the device left")
		}
		ev := s.events.nextWithin(t, forwarder.EventDeny, 30*time.Second)
		if ev.Reason != forwarder.ReasonClientClosed || ev.SNI != "slowdns.example.test" {
			t.Errorf("deny %+v, want %s", ev, forwarder.ReasonClientClosed)
		}
		onlyEvents(t, s, 1)
	})
}

// resolverCtxFunc is a Resolver that sees the lookup's context.
type resolverCtxFunc func(context.Context, allowlist.Name) ([]netip.Addr, error)

func (f resolverCtxFunc) Lookup(ctx context.Context, n allowlist.Name) ([]netip.Addr, error) {
	return f(ctx, n)
}

// onlyEvents checks that the forwarder emitted exactly n events so far.
func onlyEvents(t *testing.T, s *setup, n int) {
	t.Helper()
	s.events.mu.Lock()
	defer s.events.mu.Unlock()
	if len(s.events.list) != n {
		t.Errorf("%d events, want %d: %+v", len(s.events.list), n, s.events.list)
	}
}
