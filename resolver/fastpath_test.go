package resolver

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"testing"

	"github.com/miekg/dns"
)

// pathWriter is the ResponseWriter the slow path answers through in these tests.
type pathWriter struct {
	remote netip.AddrPort
	local  netip.Addr
	wire   []byte
}

func (w *pathWriter) LocalAddr() net.Addr {
	return net.UDPAddrFromAddrPort(netip.AddrPortFrom(w.local, 53))
}
func (w *pathWriter) RemoteAddr() net.Addr { return net.UDPAddrFromAddrPort(w.remote) }
func (w *pathWriter) WriteMsg(m *dns.Msg) error {
	b, err := m.Pack()
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}
func (w *pathWriter) Write(b []byte) (int, error) { ownBits(b); w.wire = b; return len(b), nil }
func (w *pathWriter) Close() error                { return nil }
func (w *pathWriter) TsigStatus() error           { return nil }
func (w *pathWriter) TsigTimersOnly(bool)         {}
func (w *pathWriter) Hijack()                     {}

// pathServers are servers of every configuration the fast path reads: sources, a second
// address family, a wildcard listener, learn mode, REFUSED denials, a stub zone. Each
// records its last event in *ev.
func pathServers(t testing.TB, ev *QueryEvent) []*Server {
	list := mustList(t, "api.example.com", "*.azure.test", ".vendor.test", "only.example.com from 10.1.0.0/16", ".bench.test")
	on := func(e QueryEvent) error { *ev = e; return nil }
	cfgs := []Config{
		{Addr: netip.MustParseAddrPort("192.0.2.53:53"), Answer6: netip.MustParseAddr("2001:db8::53"),
			Sources: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}},
		{Addr: netip.MustParseAddrPort("0.0.0.0:53"), DenyRefused: true,
			Zones: []Zone{{Name: "plant.internal", Servers: []netip.AddrPort{netip.MustParseAddrPort("192.0.2.1:53")}}}},
		{Addr: netip.MustParseAddrPort("[2001:db8::53]:53"), Learn: true, TTL: 300e9},
	}
	var servers []*Server
	for _, cfg := range cfgs {
		cfg.List, cfg.OnQuery = list, on
		s, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		servers = append(servers, s)
	}
	return servers
}

var pathClients = []struct {
	client netip.AddrPort
	local  netip.Addr
}{
	{netip.MustParseAddrPort("10.1.2.3:40000"), netip.MustParseAddr("192.0.2.53")},
	{netip.MustParseAddrPort("10.9.2.3:40001"), netip.MustParseAddr("127.0.0.1")},
	{netip.MustParseAddrPort("192.0.2.77:40002"), netip.MustParseAddr("192.0.2.53")},
	{netip.MustParseAddrPort("[2001:db8::77]:40003"), netip.MustParseAddr("2001:db8::53")},
}

// comparePaths answers msg on both paths for every server and client and reports how the
// fast path's reply or event differs from the slow path's; "" when it agrees or declines.
// byteEqual also asks for the same bytes.
func comparePaths(t testing.TB, servers []*Server, ev *QueryEvent, msg []byte, byteEqual bool) (taken int, diff string) {
	var st fastState
	for i, s := range servers {
		for _, c := range pathClients {
			*ev = QueryEvent{}
			fast, handled := s.fastAnswer(&st, msg, c.client, c.local, nil)
			if !handled {
				continue
			}
			taken++
			fastEv := *ev
			*ev = QueryEvent{}
			req := new(dns.Msg)
			if err := req.Unpack(msg); err != nil {
				return taken, fmt.Sprintf("fast path took a message miekg/dns rejects: %v", err)
			}
			w := &pathWriter{remote: c.client, local: c.local}
			s.ServeDNS(w, req)
			slowEv := *ev
			where := fmt.Sprintf("server %d, client %s, question %v", i, c.client, req.Question)
			got, want := new(dns.Msg), new(dns.Msg)
			if err := got.Unpack(fast); err != nil {
				return taken, fmt.Sprintf("%s: fast reply does not unpack: %v", where, err)
			}
			if err := want.Unpack(w.wire); err != nil {
				return taken, fmt.Sprintf("%s: slow reply does not unpack: %v", where, err)
			}
			if got.String() != want.String() || got.MsgHdr != want.MsgHdr {
				return taken, fmt.Sprintf("%s:\nfast %v\nslow %v", where, got, want)
			}
			if byteEqual && !bytes.Equal(fast, w.wire) {
				return taken, fmt.Sprintf("%s: bytes differ\nfast %x\nslow %x", where, fast, w.wire)
			}
			fastEv.Time = slowEv.Time
			if fmt.Sprint(fastEv) != fmt.Sprint(slowEv) {
				return taken, fmt.Sprintf("%s: events differ\nfast %+v\nslow %+v", where, fastEv, slowEv)
			}
		}
	}
	return taken, ""
}

// TestFastPathAgrees answers the common queries on both paths: the same bytes and events.
func TestFastPathAgrees(t *testing.T) {
	var ev QueryEvent
	servers := pathServers(t, &ev)
	names := []string{"api.example.com.", "Api.Example.COM.", "x.azure.test.", "azure.test.", "vendor.test.",
		"only.example.com.", "example.com.", "evil.test.", "bench.test.evil.test.", "host0042.bench.test.",
		"s.plant.internal.", "_mqtt._tcp.vendor.test.", "a.b.c.d.e.f.g.vendor.test."}
	types := []uint16{dns.TypeA, dns.TypeAAAA, dns.TypeHTTPS, dns.TypeMX, dns.TypeAXFR, dns.TypeSOA}
	total := 0
	for _, name := range names {
		for _, qt := range types {
			for _, opt := range []func(*dns.Msg){func(*dns.Msg) {}, withEDNS(4096, false), withEDNS(1232, true), withEDNS(100, false)} {
				msg, err := newReq(name, qt, opt).Pack()
				if err != nil {
					t.Fatal(err)
				}
				taken, diff := comparePaths(t, servers, &ev, msg, true)
				if diff != "" {
					t.Fatal(diff)
				}
				total += taken
			}
		}
	}
	chaos := newReq("version.bind.", dns.TypeTXT)
	chaos.Question[0].Qclass = dns.ClassCHAOS
	msg, _ := chaos.Pack()
	if taken, diff := comparePaths(t, servers, &ev, msg, true); diff != "" || taken == 0 {
		t.Fatalf("CHAOS: taken %d: %s", taken, diff)
	}
	if total < 1000 {
		t.Errorf("the fast path took only %d of the queries", total)
	}
}

// FuzzFastPath: for any message the fast path takes, its reply and event are the slow
// path's (the same message, field for field).
func FuzzFastPath(f *testing.F) {
	for _, m := range []*dns.Msg{
		newReq("api.example.com.", dns.TypeA),
		newReq("ApI.ExAmPlE.CoM.", dns.TypeAAAA, withEDNS(4096, true)),
		newReq("bench.test.evil.test.", dns.TypeA, withEDNS(1232, false)),
		newReq("x.azure.test.", dns.TypeHTTPS),
		newReq("s.plant.internal.", dns.TypeA),
	} {
		b, err := m.Pack()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	var ev QueryEvent
	servers := pathServers(f, &ev)
	f.Fuzz(func(t *testing.T, msg []byte) {
		if _, diff := comparePaths(t, servers, &ev, msg, false); diff != "" {
			t.Fatal(diff)
		}
	})
}

// BenchmarkFastPath is the read loop's work for one query, allowed and denied, with an
// OnQuery that keeps nothing: parse, decide, event, reply.
func BenchmarkFastPath(b *testing.B) {
	for _, name := range []string{"host0042.bench.test.", "host0042.bench.test.evil.test."} {
		b.Run(name, func(b *testing.B) {
			var ev QueryEvent
			s := pathServers(b, &ev)[1]
			msg, _ := newReq(name, dns.TypeA).Pack()
			client, local := netip.MustParseAddrPort("10.1.2.3:40000"), netip.MustParseAddr("198.18.0.1")
			var st fastState
			buf := make([]byte, 0, udpReplMax)
			b.ReportAllocs()
			for b.Loop() {
				reply, ok := s.fastAnswer(&st, msg, client, local, buf[:0])
				if !ok || len(reply) == 0 {
					b.Fatal("not taken")
				}
			}
		})
	}
}
