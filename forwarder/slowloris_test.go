package forwarder_test

import (
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lnm-project/lnm/forwarder"
)

// TestCase9TrickledHello is the faults catalog's case 9 with bytes that keep coming: a
// device sends a valid ClientHello one byte every 100 ms (the catalog's byte every 5 s,
// scaled down), which would take far longer than the hello timeout. The deadline counts from
// accept and the trickle does not extend it: the box closes at the hello timeout, before the
// hello is complete, and records clienthello_timeout.
func TestCase9TrickledHello(t *testing.T) {
	const helloTimeout = time.Second
	s := start(t, forwarder.Config{
		List:         rules(t, "a.example.test"),
		Parent:       netip.MustParseAddr("127.0.0.1"),
		HelloTimeout: helloTimeout,
	}, 9)
	hello := rawHello(t, "a.example.test") // a few hundred bytes: tens of seconds at this pace
	c, err := net.Dial("tcp", s.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	began := time.Now()
	var sent atomic.Int64
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		for i := range hello {
			if _, err := c.Write(hello[i : i+1]); err != nil {
				return
			}
			sent.Add(1)
			time.Sleep(100 * time.Millisecond) // the trickle's pace, not synchronisation
		}
	}()
	ev := s.events.nextWithin(t, forwarder.EventDeny, 60*time.Second)
	took := time.Since(began)
	c.Close()
	<-stopped
	if ev.Reason != forwarder.ReasonHelloTimeout {
		t.Errorf("deny reason %q, want %q", ev.Reason, forwarder.ReasonHelloTimeout)
	}
	if n := sent.Load(); n >= int64(len(hello)) {
		t.Errorf("the whole %d-byte hello was sent before the box gave up: the trickle extended the deadline", len(hello))
	}
	if took < helloTimeout {
		t.Errorf("closed after %v, before the %v hello timeout", took, helloTimeout)
	}
	t.Logf("closed after %v and %d of %d bytes", took.Round(time.Millisecond), sent.Load(), len(hello))
}
