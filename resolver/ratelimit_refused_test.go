package resolver

import (
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// TestCase35RefusedIsLimited: a storm of questions the server refuses (CHAOS version.bind,
// the catalog's identity probe) is limited like any other (faults catalog case 35): the
// client's rate gets REFUSED, every second question over it an empty TC reply, the rest
// nothing. A refusal is a reply an attacker could reflect as well as an answer.
func TestCase35RefusedIsLimited(t *testing.T) {
	const rate, sent = 20, 200
	s := startServer(t, Config{RateLimit: rate})
	srv := net.UDPAddrFromAddrPort(s.Addr())
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var refused, tc atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 1500)
		for {
			conn.SetReadDeadline(time.Now().Add(time.Second))
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			var m dns.Msg
			if err := m.Unpack(buf[:n]); err != nil {
				t.Errorf("reply: %v", err)
				continue
			}
			switch {
			case m.Truncated && len(m.Answer) == 0:
				tc.Add(1)
			case m.Rcode == dns.RcodeRefused:
				refused.Add(1)
			default:
				t.Errorf("unexpected reply %v", &m)
			}
		}
	}()
	start := time.Now()
	for i := range sent {
		req := new(dns.Msg).SetQuestion("version.bind.", dns.TypeTXT)
		req.Question[0].Qclass = dns.ClassCHAOS
		req.Id = uint16(i)
		wire, _ := req.Pack()
		if _, err := conn.WriteToUDP(wire, srv); err != nil {
			t.Fatal(err)
		}
		if i%20 == 19 {
			time.Sleep(time.Millisecond) // within the sockets' buffers, so none is lost there
		}
	}
	elapsed := time.Since(start)
	<-done
	maxRefused := int64(rate + rate*elapsed.Seconds() + 1)
	if got := refused.Load(); got < rate || got > maxRefused {
		t.Errorf("%d of %d refused questions got REFUSED in %v, want %d to %d", got, sent, elapsed, rate, maxRefused)
	}
	limited := sent - refused.Load()
	if got := tc.Load(); got < limited/2-1 || got > limited/2+1 {
		t.Errorf("%d TC replies for %d limited questions, want half", got, limited)
	}
	if refused.Load()+tc.Load() < sent/2 {
		t.Fatalf("only %d replies to %d questions: packets were lost before the server", refused.Load()+tc.Load(), sent)
	}
}
