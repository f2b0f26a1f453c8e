package forwarder_test

import (
	"crypto/tls"
	"io"
	"net/netip"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/lnm-project/lnm/forwarder"
	"github.com/lnm-project/lnm/internal/netpoll"
	"github.com/lnm-project/lnm/internal/testkit"
)

// openFDs counts this process's open descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	return len(ents)
}

// TestIdleStreamHoldsOnlyItsSockets: a spliced stream that has moved bytes both ways and
// then sits idle holds its two sockets and nothing else (no splice pipe), so a box with a
// file limit of 20,000 carries close to 10,000 idle devices. Client, forwarder and parent
// are all in this process: four sockets a stream.
func TestIdleStreamHoldsOnlyItsSockets(t *testing.T) {
	const streams = 40
	ca := testkit.NewCA(t)
	be := testkit.TLSEcho(t, "127.0.0.1:0", ca.Issue(t, "api.azure.test"))
	s := start(t, forwarder.Config{List: rules(t, "*.azure.test"), Parent: netip.MustParseAddr("127.0.0.1")}, be.Port())
	settle := func() int {
		// Pipes the runtime pooled go on finalization; let two GCs and the finalizers run.
		for range 3 {
			runtime.GC()
			time.Sleep(20 * time.Millisecond)
		}
		return openFDs(t)
	}
	base := settle()
	var conns []*tls.Conn
	for range streams {
		c, err := tls.Dial("tcp", s.addr(), ca.Client("api.azure.test"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := io.WriteString(c, "ping"); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 64)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if n, err := c.Read(buf); err != nil || string(buf[:n]) != "api.azure.test:ping" {
			t.Fatalf("echo %q, %v", buf[:n], err)
		}
		conns = append(conns, c)
		s.events.next(t, forwarder.EventOpen)
	}
	held := settle() - base
	if held > 4*streams+4 {
		t.Fatalf("%d idle streams hold %d descriptors, want 4 each (%d): a splice pipe is held while idle", streams, held, 4*streams)
	}
	t.Logf("%d idle streams hold %d descriptors (%.2f each, 4 are sockets)", streams, held, float64(held)/streams)
	// And they still carry bytes after idling.
	for _, c := range conns[:3] {
		if _, err := io.WriteString(c, "again"); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 64)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if n, err := c.Read(buf); err != nil || string(buf[:n]) != "api.azure.test:again" {
			t.Fatalf("after idling: %q, %v", buf[:n], err)
		}
	}
}

// TestCloseCutsParkedStreams: streams idle long enough to have parked (no goroutine left
// inside them) are still cut by Close after the drain timeout, each recorded as shutdown.
func TestCloseCutsParkedStreams(t *testing.T) {
	ca := testkit.NewCA(t)
	be := testkit.TLSEcho(t, "127.0.0.1:0", ca.Issue(t, "a.example.test"))
	s := start(t, forwarder.Config{
		List: rules(t, "a.example.test"), Parent: netip.MustParseAddr("127.0.0.1"),
		DrainTimeout: 200 * time.Millisecond,
	}, be.Port())
	poller, err := netpoll.Shared()
	if err != nil {
		t.Fatal(err)
	}
	base := poller.Parked()
	const streams = 3
	for range streams {
		c, err := tls.Dial("tcp", s.addr(), ca.Client("a.example.test"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		s.events.next(t, forwarder.EventOpen)
	}
	for end := time.Now().Add(30 * time.Second); poller.Parked() < base+2*streams; {
		if time.Now().After(end) {
			t.Fatalf("%d directions parked after 30s, want %d", poller.Parked()-base, 2*streams)
		}
		time.Sleep(10 * time.Millisecond)
	}
	closed := make(chan struct{})
	go func() { s.fwd.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(30 * time.Second):
		t.Fatal("Close did not return within 30s with parked streams")
	}
	for range streams {
		if ev := s.events.next(t, forwarder.EventClose); ev.Reason != forwarder.ReasonShutdown {
			t.Errorf("close reason %q, want shutdown", ev.Reason)
		}
	}
}
