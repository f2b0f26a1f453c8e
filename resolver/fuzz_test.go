package resolver

import (
	"net"
	"net/netip"
	"testing"

	"github.com/miekg/dns"
)

// recorder is a ResponseWriter that keeps the reply, packed as a transport would pack it.
type recorder struct {
	tcp  bool
	msg  *dns.Msg
	wire []byte
}

func (r *recorder) LocalAddr() net.Addr {
	if r.tcp {
		return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 53}
	}
	return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 53}
}

func (r *recorder) RemoteAddr() net.Addr {
	if r.tcp {
		return &net.TCPAddr{IP: net.IPv4(10, 1, 2, 3), Port: 40000}
	}
	return &net.UDPAddr{IP: net.IPv4(10, 1, 2, 3), Port: 40000}
}

func (r *recorder) WriteMsg(m *dns.Msg) error {
	wire, err := m.Pack()
	r.msg, r.wire = m, wire
	return err
}

func (r *recorder) Write(b []byte) (int, error) { return len(b), nil }
func (r *recorder) Close() error                { return nil }
func (r *recorder) TsigStatus() error           { return nil }
func (r *recorder) TsigTimersOnly(bool)         {}
func (r *recorder) Hijack()                     {}

func fuzzServer(t testing.TB) *Server {
	s, err := New(Config{
		Addr:    netip.MustParseAddrPort("192.0.2.53:53"),
		Answer6: netip.MustParseAddr("2001:db8::53"),
		List:    mustList(t, "api.example.com", "*.azure.test", ".vendor.test", "only.example.com from 10.1.0.0/16"),
		Sources: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// FuzzServeDNS feeds parsed messages to the handler: it must not panic (the handler would
// turn a panic into SERVFAIL, which a server without stub zones never sends otherwise), must
// answer every query with its ID, and must fit what UDP allows.
func FuzzServeDNS(f *testing.F) {
	for _, m := range []*dns.Msg{
		newReq("api.example.com.", dns.TypeA),
		newReq("ApI.ExAmPlE.CoM.", dns.TypeAAAA, withEDNS(4096, true)),
		newReq("azure.test.", dns.TypeHTTPS),
		newReq(".", dns.TypeANY),
		newReq("version.bind.", dns.TypeTXT, withClass(dns.ClassCHAOS)),
		newReq("example.com.", dns.TypeAXFR, withOpcode(dns.OpcodeNotify)),
	} {
		b, err := m.Pack()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	s := fuzzServer(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		req := new(dns.Msg)
		if err := req.Unpack(b); err != nil {
			return
		}
		for _, tcp := range []bool{false, true} {
			w := &recorder{tcp: tcp}
			s.ServeDNS(w, req)
			if w.msg == nil {
				if !req.Response {
					t.Fatalf("query left unanswered: %v", req)
				}
				continue
			}
			if req.Response {
				t.Fatalf("a response was answered: %v", w.msg)
			}
			if w.msg.Id != req.Id {
				t.Fatalf("reply id %d, query id %d", w.msg.Id, req.Id)
			}
			if w.msg.Rcode == dns.RcodeServerFailure {
				t.Fatalf("SERVFAIL (a recovered panic) for %v", req)
			}
			if w.wire == nil {
				t.Fatalf("reply does not pack: %v", w.msg)
			}
			if limit := readEDNS(req).size; !tcp && len(w.wire) > limit {
				t.Fatalf("UDP reply of %d bytes, client takes %d", len(w.wire), limit)
			}
		}
	})
}
