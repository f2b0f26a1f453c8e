package resolver

import (
	"net/netip"
	"testing"

	"github.com/miekg/dns"
)

func BenchmarkAnswer(b *testing.B) {
	p := testPolicy()
	list := mustList(b, "api.example.com", "*.azure.test", "mqtt.vendor.test")
	for _, bc := range []struct {
		name string
		req  *dns.Msg
	}{
		{"allowed_A", newReq("api.example.com.", dns.TypeA)},
		{"allowed_A_EDNS", newReq("x.azure.test.", dns.TypeA, withEDNS(1232, false))},
		{"nxdomain", newReq("evil.example.org.", dns.TypeA)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			q := query{list: list, client: lan, udp: true}
			b.ReportAllocs()
			for b.Loop() {
				if m, _ := p.answer(bc.req, q); m == nil {
					b.Fatal("no reply")
				}
			}
		})
	}
}

// BenchmarkServeDNS is the handler as the transport calls it, packing included, with an
// OnQuery hook attached as the audit trail will be.
func BenchmarkServeDNS(b *testing.B) {
	s := fuzzServer(b)
	s.cfg.OnQuery = func(QueryEvent) error { return nil }
	for _, bc := range []struct {
		name string
		req  *dns.Msg
	}{
		{"allowed_A", newReq("api.example.com.", dns.TypeA)},
		{"nxdomain", newReq("evil.example.org.", dns.TypeA)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			w := &recorder{}
			b.ReportAllocs()
			for b.Loop() {
				s.ServeDNS(w, bc.req)
			}
			if w.msg == nil || w.msg.Rcode == dns.RcodeServerFailure {
				b.Fatalf("reply %v", w.msg)
			}
		})
	}
}

// BenchmarkServerUDP is one query over loopback UDP, end to end.
func BenchmarkServerUDP(b *testing.B) {
	s := startServer(b, Config{Addr: netip.MustParseAddrPort("127.0.0.1:0")})
	c, err := (&dns.Client{Net: "udp"}).Dial(s.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	req := newReq("api.example.com.", dns.TypeA)
	b.ReportAllocs()
	for b.Loop() {
		if err := c.WriteMsg(req); err != nil {
			b.Fatal(err)
		}
		if _, err := c.ReadMsg(); err != nil {
			b.Fatal(err)
		}
	}
}
