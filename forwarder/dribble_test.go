package forwarder_test

import (
	"crypto/tls"
	"io"
	"net/netip"
	"testing"
	"time"

	"github.com/lnm-project/lnm/forwarder"
	"github.com/lnm-project/lnm/internal/testkit"
)

// TestCase21DribblingStreams is the faults catalog's case 21 one way at a time: a device
// that sends a byte every 100 ms to a server that never answers, and a server that sends a
// byte every 100 ms to a device that never writes, each for more than two idle timeouts.
// Traffic in either direction alone keeps the splice; once it stops, the idle timer ends it.
// (Time is scaled down: a 3 s idle timer stands for the configured hour, 100 ms for a
// second; a stall of the test of nearly 3 s would be needed to break it.)
func TestCase21DribblingStreams(t *testing.T) {
	const (
		idle  = 3 * time.Second
		every = 100 * time.Millisecond
		bytes = 80 // 8 s of dribbling
	)
	ca := testkit.NewCA(t)
	cert := ca.Issue(t, "up.example.test", "down.example.test")
	// The server: for up.example.test it reads the device's dribble and answers once with
	// "ok" when all of it arrived; for down.example.test it dribbles and writes nothing else.
	be := testkit.ServeTLS(t, "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}}, func(c *tls.Conn) {
		if c.Handshake() != nil {
			return
		}
		switch c.ConnectionState().ServerName {
		case "up.example.test":
			if _, err := io.ReadFull(c, make([]byte, bytes)); err != nil {
				return
			}
			io.WriteString(c, "ok")
		case "down.example.test":
			for range bytes {
				if _, err := c.Write([]byte{'.'}); err != nil {
					return
				}
				time.Sleep(every) // pacing the server, not synchronisation
			}
		}
		io.Copy(io.Discard, c) // until the box closes the stream
	})
	s := start(t, forwarder.Config{
		List:        rules(t, "up.example.test", "down.example.test"),
		Parent:      netip.MustParseAddr("127.0.0.1"),
		IdleTimeout: idle,
	}, be.Port())

	dial := func(t *testing.T, name string) *tls.Conn {
		t.Helper()
		c, err := tls.Dial("tcp", s.addr(), ca.Client(name))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(60 * time.Second))
		return c
	}
	closed := func(t *testing.T) forwarder.Event {
		t.Helper()
		ev := s.events.nextWithin(t, forwarder.EventClose, 60*time.Second)
		if ev.Reason != forwarder.ReasonIdleTimeout {
			t.Errorf("close reason %q, want idle_timeout", ev.Reason)
		}
		return ev
	}

	t.Run("device dribbles, server silent", func(t *testing.T) {
		c := dial(t, "up.example.test")
		start := time.Now()
		for range bytes {
			if _, err := c.Write([]byte{'.'}); err != nil {
				t.Fatalf("the box cut the stream after %v of one-way traffic: %v", time.Since(start), err)
			}
			time.Sleep(every) // pacing the device, not synchronisation
		}
		buf := make([]byte, 2)
		if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ok" {
			t.Fatalf("after %v of one-way traffic the server's answer: %q, %v", time.Since(start), buf, err)
		}
		ev := closed(t)
		if ev.BytesUp < bytes || ev.Duration < bytes*every {
			t.Errorf("close record: %d bytes up after %v, want the whole dribble", ev.BytesUp, ev.Duration)
		}
	})
	t.Run("server dribbles, device silent", func(t *testing.T) {
		c := dial(t, "down.example.test")
		start := time.Now()
		if _, err := io.ReadFull(c, make([]byte, bytes)); err != nil {
			t.Fatalf("the box cut the stream after %v of one-way traffic: %v", time.Since(start), err)
		}
		ev := closed(t)
		if ev.BytesDown < bytes || ev.Duration < bytes*every {
			t.Errorf("close record: %d bytes down after %v, want the whole dribble", ev.BytesDown, ev.Duration)
		}
	})
}

// nextWithin is next with a deadline of the caller's choosing.
func (e *events) nextWithin(t testing.TB, kind forwarder.EventKind, d time.Duration) forwarder.Event {
	t.Helper()
	timeout := time.After(d)
	for {
		select {
		case ev := <-e.ch:
			if ev.Kind == kind {
				return ev
			}
		case <-timeout:
			t.Fatalf("no %s event within %v", kind, d)
		}
	}
}
