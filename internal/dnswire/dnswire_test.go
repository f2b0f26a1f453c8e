package dnswire

import (
	"net/netip"
	"testing"

	"github.com/miekg/dns"
)

func pack(t testing.TB, m *dns.Msg) []byte {
	t.Helper()
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func query(name string, qtype uint16, edns bool) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.Id = 4711
	if edns {
		m.SetEdns0(4096, true)
	}
	return m
}

func TestParseAccepts(t *testing.T) {
	cookie := query("Api.Example.com.", dns.TypeAAAA, true)
	cookie.IsEdns0().Option = append(cookie.IsEdns0().Option, &dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0102030405060708"})
	cases := []struct {
		name string
		msg  *dns.Msg
		want string
		edns bool
	}{
		{"plain", query("host0001.bench.test.", dns.TypeA, false), "host0001.bench.test.", false},
		{"edns with cookie", cookie, "Api.Example.com.", true},
		{"underscore", query("_mqtt._tcp.plant.test.", dns.TypeSRV, true), "_mqtt._tcp.plant.test.", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var q Query
			if !Parse(pack(t, c.msg), &q) {
				t.Fatal("not accepted")
			}
			if string(q.Name()) != c.want || q.ID != 4711 || q.QType != c.msg.Question[0].Qtype || q.QClass != ClassIN || q.EDNS != c.edns || !q.RD {
				t.Errorf("parsed %+v name %q", q, q.Name())
			}
			if c.edns && (!q.DO || q.UDPSize != 4096) {
				t.Errorf("EDNS: DO %v size %d", q.DO, q.UDPSize)
			}
		})
	}
}

func TestParseRejects(t *testing.T) {
	two := query("a.test.", dns.TypeA, false)
	two.Question = append(two.Question, two.Question[0])
	notify := query("a.test.", dns.TypeSOA, false)
	notify.Opcode = dns.OpcodeNotify
	resp := query("a.test.", dns.TypeA, false)
	resp.Response = true
	v1 := query("a.test.", dns.TypeA, true)
	v1.IsEdns0().SetVersion(1)
	ecs := query("a.test.", dns.TypeA, true)
	ecs.IsEdns0().Option = append(ecs.IsEdns0().Option, &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 1, SourceNetmask: 24, Address: netip.MustParseAddr("192.0.2.0").AsSlice()})
	extra := pack(t, query("a.test.", dns.TypeA, false))
	cases := map[string][]byte{
		"short":          {1, 2, 3},
		"two questions":  pack(t, two),
		"notify":         pack(t, notify),
		"response":       pack(t, resp),
		"edns version 1": pack(t, v1),
		"ecs option":     pack(t, ecs),
		"root":           pack(t, query(".", dns.TypeNS, false)),
		"escaped byte":   pack(t, query(`a\.b.test.`, dns.TypeA, false)),
		"trailing byte":  append(extra, 0),
		"cut":            extra[:len(extra)-1],
	}
	for name, msg := range cases {
		var q Query
		if Parse(msg, &q) {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestAppendReplyUnpacks checks a reply of every kind against what miekg/dns reads from it.
func TestAppendReplyUnpacks(t *testing.T) {
	var q Query
	if !Parse(pack(t, query("Host1.Bench.test.", dns.TypeA, true)), &q) {
		t.Fatal("not accepted")
	}
	cases := []struct {
		name string
		r    Reply
		want string // the answer and authority records as miekg prints them
	}{
		{"A", Reply{AA: true, Addr: netip.MustParseAddr("198.18.0.1"), TTL: 60}, "Host1.Bench.test.\t60\tIN\tA\t198.18.0.1\n"},
		{"AAAA", Reply{AA: true, Addr: netip.MustParseAddr("2001:db8::1"), TTL: 60}, "Host1.Bench.test.\t60\tIN\tAAAA\t2001:db8::1\n"},
		{"NXDOMAIN", Reply{Rcode: 3, AA: true, SOA: true, TTL: 30}, ".\t30\tIN\tSOA\tlnm. hostmaster.lnm. 1 3600 600 86400 30\n"},
		{"REFUSED", Reply{Rcode: 5}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			wire := AppendReply(nil, &q, &c.r)
			m := new(dns.Msg)
			if err := m.Unpack(wire); err != nil {
				t.Fatal(err)
			}
			got := ""
			for _, rr := range append(m.Answer, m.Ns...) {
				got += rr.String() + "\n"
			}
			if got != c.want || m.Rcode != int(c.r.Rcode) || m.Authoritative != c.r.AA || !m.Response || m.Id != 4711 ||
				!m.RecursionDesired || m.Question[0].Name != "Host1.Bench.test." {
				t.Errorf("got %v", m)
			}
			if opt := m.IsEdns0(); opt == nil || opt.UDPSize() != 1232 || !opt.Do() || len(m.Extra) != 1 {
				t.Errorf("OPT: %v", m.Extra)
			}
			if len(wire) > 512 {
				t.Errorf("%d bytes", len(wire))
			}
		})
	}
	tc := AppendReply(nil, &q, &Reply{TC: true, Addr: netip.MustParseAddr("198.18.0.1"), SOA: true})
	m := new(dns.Msg)
	if err := m.Unpack(tc); err != nil || !m.Truncated || len(m.Answer)+len(m.Ns)+len(m.Extra) != 0 {
		t.Errorf("TC reply: %v %v", m, err)
	}
}

// FuzzParse: whatever Parse accepts, miekg/dns unpacks to the same query.
func FuzzParse(f *testing.F) {
	f.Add(pack(f, query("host0001.bench.test.", dns.TypeA, false)))
	f.Add(pack(f, query("Api.Example.com.", dns.TypeAAAA, true)))
	f.Add(pack(f, query("x.test.", dns.TypeANY, true)))
	f.Fuzz(func(t *testing.T, msg []byte) {
		var q Query
		if !Parse(msg, &q) {
			return
		}
		m := new(dns.Msg)
		if err := m.Unpack(msg); err != nil {
			t.Fatalf("accepted what miekg/dns rejects: %v", err)
		}
		if len(m.Question) != 1 || m.Question[0].Name != string(q.Name()) || m.Question[0].Qtype != q.QType ||
			m.Question[0].Qclass != q.QClass || m.Id != q.ID || m.RecursionDesired != q.RD || m.CheckingDisabled != q.CD ||
			m.Opcode != dns.OpcodeQuery || m.Response || len(m.Answer) != 0 || len(m.Ns) != 0 {
			t.Fatalf("parsed %+v %q, miekg %v", q, q.Name(), m)
		}
		opt := m.IsEdns0()
		if (opt != nil) != q.EDNS || opt != nil && (opt.Do() != q.DO || opt.UDPSize() != q.UDPSize || opt.Version() != 0) {
			t.Fatalf("EDNS %+v, miekg %v", q, opt)
		}
		reply := AppendReply(nil, &q, &Reply{Rcode: 3, AA: true, SOA: true, Addr: netip.MustParseAddr("2001:db8::1"), TTL: 60})
		if err := new(dns.Msg).Unpack(reply); err != nil || len(reply) > 512 {
			t.Fatalf("reply of %d bytes does not unpack: %v", len(reply), err)
		}
	})
}

func BenchmarkParseReply(b *testing.B) {
	msg := pack(b, query("host0042.bench.test.", dns.TypeA, true))
	buf := make([]byte, 0, 512)
	r := Reply{AA: true, Addr: netip.MustParseAddr("198.18.0.1"), TTL: 60}
	var q Query
	b.ReportAllocs()
	for b.Loop() {
		if !Parse(msg, &q) {
			b.Fatal("not accepted")
		}
		buf = AppendReply(buf[:0], &q, &r)
	}
}
