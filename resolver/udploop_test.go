package resolver

import (
	"fmt"
	"net"
	"net/netip"
	"testing"

	"github.com/lnm-project/lnm/internal/udpsock"
	"github.com/miekg/dns"
)

// TestServerDualStack listens on "::" and asks over IPv4 and IPv6 loopback: each answer is
// the address the query was sent to, and the reply comes from it (the read loops send
// IPv4-mapped replies through the same batched writes).
func TestServerDualStack(t *testing.T) {
	s, err := New(Config{Addr: netip.MustParseAddrPort("[::]:0"), List: mustList(t, "api.example.com")})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Skipf("no dual-stack socket: %v", err)
	}
	defer s.Close()
	for _, c := range []struct {
		local string
		qtype uint16
	}{{"127.0.0.2", dns.TypeA}, {"::1", dns.TypeAAAA}} {
		target := netip.AddrPortFrom(netip.MustParseAddr(c.local), s.Addr().Port())
		resp := ask(t, "udp", target, newReq("api.example.com.", c.qtype))
		if got := answerAddrs(resp); len(got) != 1 || got[0] != c.local {
			t.Errorf("to %s: answers %v, want [%s]", c.local, got, c.local)
		}
	}
}

// TestServerSocketsShareThePort: with four sockets on the port, clients on sixteen sockets
// of their own (the kernel spreads them by address and port) all get answers.
func TestServerSocketsShareThePort(t *testing.T) {
	s := startServer(t, Config{UDPSockets: 4})
	if n := len(*s.udp.Load()); n != 4 {
		t.Fatalf("%d sockets, want 4", n)
	}
	for i := range 16 {
		name := fmt.Sprintf("c%d.azure.test.", i)
		resp := ask(t, "udp", s.Addr(), newReq(name, dns.TypeA))
		if resp.Rcode != dns.RcodeSuccess || len(resp.Answer) != 1 {
			t.Errorf("%s: %v", name, resp)
		}
	}
}

// TestServerPortTaken: a UDP port another socket holds is an error at Start, though the
// server's own sockets share their port (SO_REUSEPORT would let them in beside a socket that
// set it too; the plain probe does not).
func TestServerPortTaken(t *testing.T) {
	tl, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	port := tl.Addr().(*net.TCPAddr).Port
	tl.Close() // the TCP port free, the UDP one held
	for _, reuse := range []bool{false, true} {
		held, err := udpsock.ListenOne("udp4", netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port)), reuse)
		if err != nil {
			t.Skipf("UDP port %d is taken already: %v", port, err)
		}
		s, err := New(Config{Addr: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port)), UDPSockets: 2})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Start(); err == nil {
			t.Errorf("reuse %v: Start succeeded on a UDP port another socket holds", reuse)
		}
		s.Close()
		held.Close()
	}
}
