package resolver

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func dialTCPFrom(t *testing.T, s *Server, src string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	c, err := d.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return c
}

// TestCase34TCPPerSource (faults catalog items 33 and 34, per client): a client holding its
// share of TCP connections, silent, has the next one closed at once while another client is
// answered over TCP; OnLimited counts the refusal once at Close; when the client lets one
// go, it is served again. A child box gets ChildFactor times the share.
func TestCase34TCPPerSource(t *testing.T) {
	var mu sync.Mutex
	var events []LimitEvent
	s := startServer(t, Config{
		MaxTCPPerSource: 2, Children: []netip.Prefix{netip.MustParsePrefix("127.0.0.4/32")}, ChildFactor: 2,
		OnLimited: func(ev LimitEvent) { mu.Lock(); events = append(events, ev); mu.Unlock() },
	})
	held := []net.Conn{dialTCPFrom(t, s, "127.0.0.2"), dialTCPFrom(t, s, "127.0.0.2")}
	// The listener counts a connection when it accepts it: wait until both are served.
	for _, c := range held {
		c.Write(frame(t, newReq("api.example.com.", dns.TypeA)))
		readTCPMsg(t, c)
	}
	// The box closes the third at once; the reset may already reach the dialer itself.
	begin := time.Now()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}
	over, err := d.Dial("tcp", s.Addr().String())
	if err == nil {
		defer over.Close()
		over.SetReadDeadline(time.Now().Add(2 * time.Second))
		_, err = over.Read(make([]byte, 1))
	}
	if err == nil || errors.Is(err, syscall.ETIMEDOUT) || time.Since(begin) > time.Second {
		t.Fatalf("the third connection of a client holding 2: %v after %v; want closed at once", err, time.Since(begin))
	}
	other := dialTCPFrom(t, s, "127.0.0.3")
	other.Write(frame(t, newReq("api.example.com.", dns.TypeA)))
	if m := readTCPMsg(t, other); m.Rcode != dns.RcodeSuccess {
		t.Errorf("another client: %v", m)
	}
	for i := range 4 {
		c := dialTCPFrom(t, s, "127.0.0.4")
		c.Write(frame(t, newReq("api.example.com.", dns.TypeA)))
		if m := readTCPMsg(t, c); m.Rcode != dns.RcodeSuccess {
			t.Errorf("child connection %d of a share of 4: %v", i, m)
		}
	}
	held[0].Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if c, err := d.Dial("tcp", s.Addr().String()); err == nil {
			c.SetDeadline(time.Now().Add(time.Second))
			c.Write(frame(t, newReq("api.example.com.", dns.TypeA)))
			m := new(dns.Msg)
			var lenb [2]byte
			if _, err := io.ReadFull(c, lenb[:]); err == nil {
				buf := make([]byte, int(lenb[0])<<8|int(lenb[1]))
				if _, err := io.ReadFull(c, buf); err == nil && m.Unpack(buf) == nil {
					c.Close()
					break
				}
			}
			c.Close()
		}
		if time.Now().After(deadline) {
			t.Fatal("the client let one go and is still refused")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := s.TCPRefused(); n < 1 {
		t.Errorf("TCPRefused = %d", n)
	}
	s.Close()
	mu.Lock()
	defer mu.Unlock()
	var refused uint64
	for _, ev := range events {
		if ev.Client != netip.MustParseAddr("127.0.0.2") || ev.Dropped+ev.Slipped != 0 {
			t.Errorf("event %+v", ev)
		}
		refused += ev.TCPRefused
	}
	if refused != s.TCPRefused() {
		t.Errorf("summaries count %d refused, the server %d", refused, s.TCPRefused())
	}
}
