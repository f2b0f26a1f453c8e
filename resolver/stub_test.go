package resolver

import (
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// plantDNS is a miekg server on 127.0.0.1 standing in for a plant name server or an upstream
// resolver, counting the queries it gets per transport.
type plantDNS struct {
	addr     netip.AddrPort
	udp, tcp atomic.Int32
}

// startPlantDNS serves handler on UDP and TCP of one loopback port; tcp tells it which.
func startPlantDNS(t testing.TB, handler func(w dns.ResponseWriter, req *dns.Msg, tcp bool)) *plantDNS {
	t.Helper()
	tl, ucs, err := listenBoth(loopback, 1)
	if err != nil {
		t.Fatal(err)
	}
	p := &plantDNS{addr: netip.AddrPortFrom(loopback.Addr(), uint16(tl.Addr().(*net.TCPAddr).Port))}
	h := dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		_, tcp := w.RemoteAddr().(*net.TCPAddr)
		if tcp {
			p.tcp.Add(1)
		} else {
			p.udp.Add(1)
		}
		handler(w, req, tcp)
	})
	ready := make(chan struct{}, 2)
	servers := []*dns.Server{
		{PacketConn: ucs[0].UDPConn, Handler: h, NotifyStartedFunc: func() { ready <- struct{}{} }},
		{Listener: tl, Handler: h, NotifyStartedFunc: func() { ready <- struct{}{} }},
	}
	done := make(chan struct{}, 2)
	for _, srv := range servers {
		go func() {
			srv.ActivateAndServe()
			done <- struct{}{}
		}()
	}
	<-ready
	<-ready
	t.Cleanup(func() {
		for _, srv := range servers {
			srv.Shutdown()
		}
		<-done
		<-done
	})
	return p
}

func (p *plantDNS) queries() int { return int(p.udp.Load() + p.tcp.Load()) }

// deadServer is a UDP socket that reads queries and never answers.
func deadServer(t testing.TB) netip.AddrPort {
	t.Helper()
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(loopback))
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		buf := make([]byte, 512)
		for {
			if _, _, err := c.ReadFrom(buf); err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() { c.Close() })
	return c.LocalAddr().(*net.UDPAddr).AddrPort()
}

// plantAnswers answers A questions with n records, truncated (TC, no records) over UDP when
// n is large, as a server does when the answer does not fit.
func plantAnswers(n int) func(w dns.ResponseWriter, req *dns.Msg, tcp bool) {
	return func(w dns.ResponseWriter, req *dns.Msg, tcp bool) {
		m := bigResponse(req, n)
		m.Extra = nil
		if !tcp && n > 20 {
			m.Answer = nil
			m.Truncated = true
		}
		w.WriteMsg(m)
	}
}

func TestStubZoneForwarding(t *testing.T) {
	small := startPlantDNS(t, plantAnswers(2))
	big := startPlantDNS(t, plantAnswers(60))
	nx := startPlantDNS(t, func(w dns.ResponseWriter, req *dns.Msg, _ bool) {
		m := new(dns.Msg)
		m.SetRcode(req, dns.RcodeNameError)
		m.Authoritative = true
		w.WriteMsg(m)
	})
	dead := deadServer(t)
	var events atomic.Int32
	s := startServer(t, Config{
		List: mustList(t, "*.plant.internal"), // the zone wins
		Zones: []Zone{
			{Name: "plant.internal", Servers: []netip.AddrPort{small.addr}},
			{Name: "big.plant.internal", Servers: []netip.AddrPort{big.addr}},
			{Name: "failover.internal", Servers: []netip.AddrPort{dead, nx.addr}},
			{Name: "down.internal", Servers: []netip.AddrPort{dead}},
		},
		OnQuery: func(e QueryEvent) error {
			if e.Verdict == VerdictZone {
				events.Add(1)
			}
			return nil
		},
	}, func(s *Server) { s.zoneTimeout = 300 * time.Millisecond })

	req := newReq("Broker.PLANT.internal.", dns.TypeA)
	resp := ask(t, "udp", s.Addr(), req)
	if resp.Id != req.Id || resp.Question[0] != req.Question[0] || resp.Rcode != dns.RcodeSuccess ||
		len(answerAddrs(resp)) != 2 || answerAddrs(resp)[0] != "10.30.0.0" {
		t.Errorf("relayed: %v", resp)
	}

	// TC from the plant server: the box asks again over TCP, then truncates for its own
	// UDP client (512 bytes without EDNS) and relays everything over TCP.
	resp = ask(t, "udp", s.Addr(), newReq("host.big.plant.internal.", dns.TypeA))
	if !resp.Truncated || big.udp.Load() != 1 || big.tcp.Load() != 1 {
		t.Errorf("big over UDP: tc=%v plant udp=%d tcp=%d, want TC after one UDP and one TCP query",
			resp.Truncated, big.udp.Load(), big.tcp.Load())
	}
	resp = ask(t, "tcp", s.Addr(), newReq("host.big.plant.internal.", dns.TypeA))
	if resp.Truncated || len(resp.Answer) != 60 {
		t.Errorf("big over TCP: tc=%v %d answers, want all 60", resp.Truncated, len(resp.Answer))
	}

	t0 := time.Now()
	resp = ask(t, "udp", s.Addr(), newReq("x.failover.internal.", dns.TypeA))
	if resp.Rcode != dns.RcodeNameError || !resp.Authoritative || nx.queries() != 1 {
		t.Errorf("failover: rcode=%s aa=%v, %d queries at the second server", dns.RcodeToString[resp.Rcode], resp.Authoritative, nx.queries())
	}
	if d := time.Since(t0); d < s.zoneTimeout {
		t.Errorf("failover answered in %s, before the dead server could time out", d)
	}

	resp = ask(t, "tcp", s.Addr(), newReq("x.down.internal.", dns.TypeA))
	if resp.Rcode != dns.RcodeServerFailure {
		t.Errorf("all servers down: rcode %s, want SERVFAIL", dns.RcodeToString[resp.Rcode])
	}
	if n := events.Load(); n != 5 {
		t.Errorf("%d zone events, want 5", n)
	}
}

// New refuses a stub zone that forwards to the server's own configured socket.
func TestNewRefusesZoneLoop(t *testing.T) {
	_, err := New(Config{Addr: netip.MustParseAddrPort("[::]:5353"), Zones: []Zone{{Name: "plant.test", Servers: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:5353")}}}})
	if err == nil || !strings.Contains(err.Error(), "which is this server itself") {
		t.Fatalf("New: %v, want the loop refused", err)
	}
}

func TestIsSelf(t *testing.T) {
	ap := netip.MustParseAddrPort
	for _, tc := range []struct {
		name         string
		self, server string
		want         bool
	}{
		{"the listen address", "127.0.0.1:53", "127.0.0.1:53", true},
		{"another port", "127.0.0.1:53", "127.0.0.1:5353", false},
		{"another loopback address", "127.0.0.1:53", "127.0.0.2:53", false},
		{"not yet bound", "127.0.0.1:0", "127.0.0.1:53", false},
		{"v4-mapped listen address", "[::ffff:127.0.0.1]:53", "127.0.0.1:53", true},
		{"IPv6 listen address", "[::1]:53", "[::1]:53", true},
		{"IPv4 wildcard, loopback", "0.0.0.0:53", "127.0.0.9:53", true},
		{"IPv4 wildcard, IPv6 loopback", "0.0.0.0:53", "[::1]:53", false},
		{"IPv4 wildcard, another host", "0.0.0.0:53", "192.0.2.1:53", false},
		{"IPv6 wildcard, IPv6 loopback", "[::]:53", "[::1]:53", true},
		{"IPv6 wildcard hears IPv4 too", "[::]:53", "127.0.0.1:53", true},
		{"IPv6 wildcard, another host", "[::]:53", "[2001:db8::1]:53", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := isSelf(ap(tc.self), ap(tc.server)); got != tc.want {
				t.Errorf("isSelf(%s, %s) = %v, want %v", tc.self, tc.server, got, tc.want)
			}
		})
	}
}
