package forwarder_test

import (
	"crypto/tls"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/lnm-project/lnm/forwarder"
	"github.com/lnm-project/lnm/internal/testkit"
)

// from returns a dialer whose connections come from the loopback address src: on Linux all
// of 127.0.0.0/8 is local, so 127.0.0.x are distinct sources to the box.
func from(src string) *net.Dialer {
	return &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
}

// streamFrom opens a TLS stream from src through the forwarder and checks that it echoes.
func streamFrom(t *testing.T, addr, src, sni string, ca *testkit.CA) (*tls.Conn, error) {
	t.Helper()
	c, err := tls.DialWithDialer(from(src), "tcp", addr, ca.Client(sni))
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, "hi"); err != nil {
		c.Close()
		return nil, err
	}
	buf := make([]byte, 64)
	if _, err := c.Read(buf); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// TestCase20OneSourceHoldsItsCap (faults catalog item 20): one device holding its cap of
// established streams is refused more at once, with reason too_many_conns, while another
// device still connects; when the first lets one go, it gets one again.
func TestCase20OneSourceHoldsItsCap(t *testing.T) {
	const perSrc = 5
	ca := testkit.NewCA(t)
	be := testkit.TLSEcho(t, "127.0.0.1:0", ca.Issue(t, "a.example.test"))
	s := start(t, forwarder.Config{
		List: rules(t, "a.example.test"), Parent: netip.MustParseAddr("127.0.0.1"),
		MaxConnsPerSrc: perSrc,
	}, be.Port())
	var held []*tls.Conn
	for i := range perSrc {
		c, err := streamFrom(t, s.addr(), "127.0.0.2", "a.example.test", ca)
		if err != nil {
			t.Fatalf("stream %d of the hog: %v", i, err)
		}
		defer c.Close()
		held = append(held, c)
		s.events.next(t, forwarder.EventOpen)
	}
	if _, err := streamFrom(t, s.addr(), "127.0.0.2", "a.example.test", ca); err == nil {
		t.Fatal("the hog got a stream past its cap")
	}
	ev := s.events.next(t, forwarder.EventDeny)
	if ev.Reason != forwarder.ReasonTooManyConns || ev.Client.Addr() != netip.MustParseAddr("127.0.0.2") || ev.SNI != "" {
		t.Fatalf("deny %+v, want too_many_conns from 127.0.0.2 before any hello", ev)
	}
	c, err := streamFrom(t, s.addr(), "127.0.0.3", "a.example.test", ca)
	if err != nil {
		t.Fatalf("another device is refused while the hog holds its cap: %v", err)
	}
	c.Close()
	s.events.next(t, forwarder.EventOpen)
	s.events.next(t, forwarder.EventClose)
	held[0].Close()
	s.events.next(t, forwarder.EventClose)
	if c, err := streamFrom(t, s.addr(), "127.0.0.2", "a.example.test", ca); err != nil {
		t.Fatalf("the hog let one go and is still refused: %v", err)
	} else {
		c.Close()
	}
	if n := s.fwd.Limited(forwarder.ReasonTooManyConns); n != 1 {
		t.Errorf("Limited(too_many_conns) = %d, want 1", n)
	}
}

// TestCase20RateOfNewConnections (faults catalog item 20): a device opening connections in
// a loop is refused past its burst (twice the rate) with conn_rate_limited, another device
// is not, and the LimitEvent at Close counts what was not recorded one by one.
func TestCase20RateOfNewConnections(t *testing.T) {
	const rate, tries = 5, 40
	var limited []forwarder.LimitEvent
	s := start(t, forwarder.Config{
		List: rules(t, "a.example.test"), Parent: netip.MustParseAddr("127.0.0.1"),
		ConnRate: rate, HelloTimeout: 50 * time.Millisecond,
		OnLimited: func(ev forwarder.LimitEvent) { limited = append(limited, ev) },
	}, 1)
	// A refused connection is closed at once, an admitted one by the hello deadline. The
	// bucket refills while the loop runs (slowly on a loaded machine), so how many are
	// admitted is bounded by the burst plus the refill over the loop's own duration.
	refused := 0 // seen closed at once by the device
	begin := time.Now()
	for range tries {
		c, err := from("127.0.0.2").Dial("tcp", s.addr())
		if err != nil {
			refused++ // reset before connect returned
			continue
		}
		c.SetReadDeadline(time.Now().Add(time.Second))
		start := time.Now()
		if _, err := c.Read(make([]byte, 1)); err != nil && time.Since(start) < 40*time.Millisecond {
			refused++ // closed at once, not by the hello deadline
		}
		c.Close()
	}
	elapsed := time.Since(begin)
	limitedN := int(s.fwd.Limited(forwarder.ReasonConnRateLimited))
	admitted := tries - limitedN
	if most := 2*rate + int(elapsed.Seconds()*rate) + 1; admitted < 2*rate || admitted > most {
		t.Errorf("%d of %d admitted in %v, want the burst %d and at most %d", admitted, tries, elapsed, 2*rate, most)
	}
	if refused > limitedN {
		t.Errorf("the device saw %d closed at once, the forwarder refused %d", refused, limitedN)
	}
	c, err := from("127.0.0.3").Dial("tcp", s.addr())
	if err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(time.Second))
	other := time.Now()
	c.Read(make([]byte, 1))
	c.Close()
	if took := time.Since(other); took < 40*time.Millisecond {
		t.Errorf("another device was closed at once too (%v)", took)
	}
	if n := int(s.fwd.Limited(forwarder.ReasonConnRateLimited)); n != limitedN {
		t.Errorf("Limited(conn_rate_limited) = %d after the other device, %d before", n, limitedN)
	}
	s.fwd.Close()
	var summed uint64
	for _, ev := range limited {
		if ev.Client != netip.MustParseAddr("127.0.0.2") {
			t.Errorf("a summary for %v", ev.Client)
		}
		summed += ev.Count
	}
	// Every one of the hog's connections was a flood denial (a limit or no hello): the
	// first few were recorded, the rest summarized.
	if recorded := uint64(tries) - summed; recorded != 10 || s.fwd.Unrecorded() != summed {
		t.Errorf("%d of the hog's %d connections recorded, %d summarized (Unrecorded %d); want 10 recorded", recorded, tries, summed, s.fwd.Unrecorded())
	}
}

// TestCase20LimitsReload: a committed config's limits apply to the next connection, and
// the streams a source already holds count against them.
func TestCase20LimitsReload(t *testing.T) {
	ca := testkit.NewCA(t)
	be := testkit.TLSEcho(t, "127.0.0.1:0", ca.Issue(t, "a.example.test"))
	s := start(t, forwarder.Config{List: rules(t, "a.example.test"), Parent: netip.MustParseAddr("127.0.0.1")}, be.Port())
	c, err := streamFrom(t, s.addr(), "127.0.0.2", "a.example.test", ca)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s.events.next(t, forwarder.EventOpen)
	cfg := s.cfg
	cfg.MaxConnsPerSrc = 1
	p, err := s.fwd.Prepare(cfg)
	if err != nil {
		t.Fatal(err)
	}
	p.Commit()
	if _, err := streamFrom(t, s.addr(), "127.0.0.2", "a.example.test", ca); err == nil {
		t.Fatal("a second stream past the reloaded cap of 1")
	}
	if ev := s.events.next(t, forwarder.EventDeny); ev.Reason != forwarder.ReasonTooManyConns {
		t.Errorf("deny %q, want too_many_conns", ev.Reason)
	}
	if err := roundTripTLS(c); err != nil {
		t.Errorf("the stream held before the reload: %v", err)
	}
}

func roundTripTLS(c *tls.Conn) error {
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, "again"); err != nil {
		return err
	}
	_, err := c.Read(make([]byte, 64))
	return err
}
