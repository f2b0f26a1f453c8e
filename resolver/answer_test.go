package resolver

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/lnm-project/lnm/allowlist"
	"github.com/miekg/dns"
)

// mustList builds a list from lines "PATTERN [from CIDR]".
func mustList(t testing.TB, lines ...string) *allowlist.List {
	t.Helper()
	var rules []allowlist.Rule
	for _, line := range lines {
		f := strings.Fields(line)
		r, err := allowlist.ParseRule(f[0], f[1:])
		if err != nil {
			t.Fatal(err)
		}
		r.Origin = fmt.Sprintf("test:%d", len(rules)+1)
		rules = append(rules, r)
	}
	l, err := allowlist.New(rules)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// newReq builds a query as a stub resolver would: RD set, a random ID.
func newReq(name string, qtype uint16, opts ...func(*dns.Msg)) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	for _, o := range opts {
		o(m)
	}
	return m
}

func withEDNS(size uint16, do bool, options ...dns.EDNS0) func(*dns.Msg) {
	return func(m *dns.Msg) {
		m.SetEdns0(size, do)
		opt := m.IsEdns0()
		opt.Option = append(opt.Option, options...)
	}
}

func withOpcode(op int) func(*dns.Msg) { return func(m *dns.Msg) { m.Opcode = op } }
func withClass(c uint16) func(*dns.Msg) {
	return func(m *dns.Msg) { m.Question[0].Qclass = c }
}

var (
	box4 = netip.MustParseAddr("192.0.2.53")
	box6 = netip.MustParseAddr("2001:db8::53")
	lan  = netip.MustParseAddr("10.1.2.3")
)

func testPolicy() *policy {
	return &policy{
		answer4: box4,
		answer6: box6,
		ttl:     60,
		sources: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("127.0.0.0/8")},
		zones:   []Zone{{Name: "plant.internal", Servers: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:1")}}},
	}
}

const soaText = ".\t60\tIN\tSOA\tlnm. hostmaster.lnm. 1 3600 600 86400 60"

type want struct {
	silent  bool
	zone    bool
	rcode   int
	aa      bool
	answer  []string // RR.String() of each answer record
	ns      []string
	opt     string // "" for no OPT, else "size=N do=B"
	tc      bool
	verdict Verdict
	reason  allowlist.Reason
}

func TestAnswer(t *testing.T) {
	list := mustList(t,
		"api.example.com",
		"*.azure.test",
		"mqtt.vendor.test",
		"only.example.com from 10.1.0.0/16",
		"*.plant.internal", // the stub zone wins over this
	)
	v4only := testPolicy()
	v4only.answer6 = netip.Addr{}
	noAddr := testPolicy()
	noAddr.answer4, noAddr.answer6 = netip.Addr{}, netip.Addr{}
	refuse := testPolicy()
	refuse.refuse = true
	wild := testPolicy()
	wild.wildcard = true
	wild.answer6 = netip.Addr{}

	signed := newReq("api.example.com.", dns.TypeA)
	signed.SetTsig("key.", dns.HmacSHA256, 300, 1700000000)
	twoQ := newReq("api.example.com.", dns.TypeA)
	twoQ.Question = append(twoQ.Question, twoQ.Question[0])
	noQ := newReq("api.example.com.", dns.TypeA)
	noQ.Question = nil
	twoOPT := newReq("api.example.com.", dns.TypeA, withEDNS(1232, false))
	twoOPT.Extra = append(twoOPT.Extra, twoOPT.Extra[0])
	response := newReq("api.example.com.", dns.TypeA)
	response.Response = true
	badVers := newReq("api.example.com.", dns.TypeA, withEDNS(1232, false))
	badVers.IsEdns0().SetVersion(1)

	allowA := []string{"api.example.com.\t60\tIN\tA\t192.0.2.53"}
	tests := []struct {
		name   string
		pol    *policy
		req    *dns.Msg
		client netip.Addr
		local  netip.Addr
		want   want
	}{
		{"allowed A", nil, newReq("api.example.com.", dns.TypeA), lan, netip.Addr{},
			want{aa: true, answer: allowA, verdict: VerdictAllow, reason: allowlist.ReasonListed}},
		{"allowed AAAA", nil, newReq("api.example.com.", dns.TypeAAAA), lan, netip.Addr{},
			want{aa: true, answer: []string{"api.example.com.\t60\tIN\tAAAA\t2001:db8::53"}, verdict: VerdictAllow, reason: allowlist.ReasonListed}},
		{"allowed AAAA without IPv6 is NODATA", v4only, newReq("api.example.com.", dns.TypeAAAA), lan, netip.Addr{},
			want{aa: true, ns: []string{soaText}, verdict: VerdictAllow, reason: allowlist.ReasonListed}},
		{"HTTPS is NODATA", nil, newReq("api.example.com.", dns.TypeHTTPS), lan, netip.Addr{},
			want{aa: true, ns: []string{soaText}, verdict: VerdictAllow, reason: allowlist.ReasonListed}},
		{"SVCB is NODATA", nil, newReq("api.example.com.", dns.TypeSVCB), lan, netip.Addr{},
			want{aa: true, ns: []string{soaText}, verdict: VerdictAllow, reason: allowlist.ReasonListed}},
		{"TYPE1000 is NODATA", nil, newReq("api.example.com.", 1000), lan, netip.Addr{},
			want{aa: true, ns: []string{soaText}, verdict: VerdictAllow, reason: allowlist.ReasonListed}},
		{"MX is NODATA", nil, newReq("api.example.com.", dns.TypeMX), lan, netip.Addr{},
			want{aa: true, ns: []string{soaText}, verdict: VerdictAllow, reason: allowlist.ReasonListed}},
		{"ANY is the A record only", nil, newReq("api.example.com.", dns.TypeANY), lan, netip.Addr{},
			want{aa: true, answer: allowA, verdict: VerdictAllow, reason: allowlist.ReasonListed}},
		{"ANY without addresses is HINFO RFC8482", noAddr, newReq("api.example.com.", dns.TypeANY), lan, netip.Addr{},
			want{aa: true, answer: []string{"api.example.com.\t60\tIN\tHINFO\t\"RFC8482\" \"\""}, verdict: VerdictAllow, reason: allowlist.ReasonListed}},
		{"A without IPv4 is NODATA", noAddr, newReq("api.example.com.", dns.TypeA), lan, netip.Addr{},
			want{aa: true, ns: []string{soaText}, verdict: VerdictAllow, reason: allowlist.ReasonListed}},
		{"wildcard at depth", nil, newReq("a.b.azure.test.", dns.TypeA), lan, netip.Addr{},
			want{aa: true, answer: []string{"a.b.azure.test.\t60\tIN\tA\t192.0.2.53"}, verdict: VerdictAllow, reason: allowlist.ReasonListed}},
		{"wildcard base is an empty non-terminal", nil, newReq("azure.test.", dns.TypeA), lan, netip.Addr{},
			want{aa: true, ns: []string{soaText}, verdict: VerdictDeny, reason: ReasonEmptyNonTerminal}},
		{"parent of an exact name is an empty non-terminal", nil, newReq("vendor.test.", dns.TypeA), lan, netip.Addr{},
			want{aa: true, ns: []string{soaText}, verdict: VerdictDeny, reason: ReasonEmptyNonTerminal}},
		{"top-level domain above rules is an empty non-terminal", nil, newReq("test.", dns.TypeAAAA), lan, netip.Addr{},
			want{aa: true, ns: []string{soaText}, verdict: VerdictDeny, reason: ReasonEmptyNonTerminal}},
		{"unlisted name is NXDOMAIN with SOA", nil, newReq("evil.example.org.", dns.TypeA), lan, netip.Addr{},
			want{rcode: dns.RcodeNameError, aa: true, ns: []string{soaText}, verdict: VerdictDeny, reason: allowlist.ReasonNotListed}},
		{"below an exact rule is NXDOMAIN", nil, newReq("www.api.example.com.", dns.TypeA), lan, netip.Addr{},
			want{rcode: dns.RcodeNameError, aa: true, ns: []string{soaText}, verdict: VerdictDeny, reason: allowlist.ReasonNotListed}},
		{"HTTPS of unlisted name is NXDOMAIN", nil, newReq("evil.example.org.", dns.TypeHTTPS), lan, netip.Addr{},
			want{rcode: dns.RcodeNameError, aa: true, ns: []string{soaText}, verdict: VerdictDeny, reason: allowlist.ReasonNotListed}},
		{"deny refused: unlisted name is REFUSED, no SOA", refuse, newReq("evil.example.org.", dns.TypeA), lan, netip.Addr{},
			want{rcode: dns.RcodeRefused, verdict: VerdictDeny, reason: allowlist.ReasonNotListed}},
		{"deny refused: a rule's from mismatch is REFUSED", refuse, newReq("only.example.com.", dns.TypeA), netip.MustParseAddr("10.2.0.1"), netip.Addr{},
			want{rcode: dns.RcodeRefused, verdict: VerdictDeny, reason: allowlist.ReasonFromMismatch}},
		{"deny refused: an empty non-terminal is still NODATA", refuse, newReq("azure.test.", dns.TypeA), lan, netip.Addr{},
			want{aa: true, ns: []string{soaText}, verdict: VerdictDeny, reason: ReasonEmptyNonTerminal}},
		{"deny refused: an allowed name is answered", refuse, newReq("api.example.com.", dns.TypeA), lan, netip.Addr{},
			want{aa: true, answer: allowA, verdict: VerdictAllow, reason: allowlist.ReasonListed}},
		{"source-narrowed rule allows its source", nil, newReq("only.example.com.", dns.TypeA), lan, netip.Addr{},
			want{aa: true, answer: []string{"only.example.com.\t60\tIN\tA\t192.0.2.53"}, verdict: VerdictAllow, reason: allowlist.ReasonListed}},
		{"source-narrowed rule denies other sources", nil, newReq("only.example.com.", dns.TypeA), netip.MustParseAddr("10.2.0.1"), netip.Addr{},
			want{rcode: dns.RcodeNameError, aa: true, ns: []string{soaText}, verdict: VerdictDeny, reason: allowlist.ReasonFromMismatch}},
		{"client outside sources is REFUSED", nil, newReq("api.example.com.", dns.TypeA), netip.MustParseAddr("192.168.1.1"), netip.Addr{},
			want{rcode: dns.RcodeRefused, verdict: VerdictRefused, reason: allowlist.ReasonSourceNotAllowed}},
		{"v4-mapped client is unmapped", nil, newReq("api.example.com.", dns.TypeA), netip.MustParseAddr("::ffff:10.1.2.3"), netip.Addr{},
			want{aa: true, answer: allowA, verdict: VerdictAllow, reason: allowlist.ReasonListed}},
		{"0x20 casing echoed", nil, newReq("ApI.eXaMpLe.CoM.", dns.TypeA), lan, netip.Addr{},
			want{aa: true, answer: []string{"ApI.eXaMpLe.CoM.\t60\tIN\tA\t192.0.2.53"}, verdict: VerdictAllow, reason: allowlist.ReasonListed}},
		{"AXFR is REFUSED", nil, newReq("example.com.", dns.TypeAXFR), lan, netip.Addr{},
			want{rcode: dns.RcodeRefused, verdict: VerdictRefused, reason: ReasonZoneTransfer}},
		{"IXFR is REFUSED", nil, newReq("api.example.com.", dns.TypeIXFR), lan, netip.Addr{},
			want{rcode: dns.RcodeRefused, verdict: VerdictRefused, reason: ReasonZoneTransfer}},
		{"CHAOS version.bind is REFUSED", nil, newReq("version.bind.", dns.TypeTXT, withClass(dns.ClassCHAOS)), lan, netip.Addr{},
			want{rcode: dns.RcodeRefused, verdict: VerdictRefused, reason: ReasonClass}},
		{"TSIG-signed query is REFUSED", nil, signed, lan, netip.Addr{},
			want{rcode: dns.RcodeRefused, verdict: VerdictRefused, reason: ReasonTSIG}},
		{"NOTIFY is REFUSED", nil, newReq("example.com.", dns.TypeSOA, withOpcode(dns.OpcodeNotify)), lan, netip.Addr{},
			want{rcode: dns.RcodeRefused, verdict: VerdictRefused, reason: ReasonOpcode}},
		{"UPDATE is NOTIMP", nil, newReq("example.com.", dns.TypeSOA, withOpcode(dns.OpcodeUpdate)), lan, netip.Addr{},
			want{rcode: dns.RcodeNotImplemented, verdict: VerdictError, reason: ReasonOpcode}},
		{"opcode 15 is NOTIMP", nil, newReq("api.example.com.", dns.TypeA, withOpcode(15)), lan, netip.Addr{},
			want{rcode: dns.RcodeNotImplemented, verdict: VerdictError, reason: ReasonOpcode}},
		{"a response is not answered", nil, response, lan, netip.Addr{}, want{silent: true}},
		{"two questions is FORMERR", nil, twoQ, lan, netip.Addr{},
			want{rcode: dns.RcodeFormatError, verdict: VerdictError, reason: ReasonMalformed}},
		{"no question is FORMERR", nil, noQ, lan, netip.Addr{},
			want{rcode: dns.RcodeFormatError, verdict: VerdictError, reason: ReasonMalformed}},
		{"EDNS advertises 1232 and drops options", nil,
			newReq("api.example.com.", dns.TypeA, withEDNS(4096, false,
				&dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0102030405060708"},
				&dns.EDNS0_LOCAL{Code: 65001, Data: []byte("x")})), lan, netip.Addr{},
			want{aa: true, answer: allowA, opt: "size=1232 do=false", verdict: VerdictAllow, reason: allowlist.ReasonListed}},
		{"EDNS DO is echoed", nil, newReq("evil.example.org.", dns.TypeA, withEDNS(1232, true)), lan, netip.Addr{},
			want{rcode: dns.RcodeNameError, aa: true, ns: []string{soaText}, opt: "size=1232 do=true", verdict: VerdictDeny, reason: allowlist.ReasonNotListed}},
		{"EDNS version 1 is BADVERS", nil, badVers, lan, netip.Addr{},
			want{rcode: dns.RcodeBadVers, opt: "size=1232 do=false", verdict: VerdictError, reason: ReasonEDNSVersion}},
		{"two OPT records is FORMERR", nil, twoOPT, lan, netip.Addr{},
			want{rcode: dns.RcodeFormatError, verdict: VerdictError, reason: ReasonMalformed}},
		{"root SOA", nil, newReq(".", dns.TypeSOA), lan, netip.Addr{},
			want{aa: true, answer: []string{soaText}, verdict: VerdictDeny, reason: ReasonEmptyNonTerminal}},
		{"root NS is NODATA", nil, newReq(".", dns.TypeNS), lan, netip.Addr{},
			want{aa: true, ns: []string{soaText}, verdict: VerdictDeny, reason: ReasonEmptyNonTerminal}},
		{"address literal is NXDOMAIN", nil, newReq("192.0.2.1.", dns.TypeA), lan, netip.Addr{},
			want{rcode: dns.RcodeNameError, aa: true, ns: []string{soaText}, verdict: VerdictDeny, reason: ReasonNotHostName}},
		{"escaped bytes are NXDOMAIN", nil, newReq("a\\000b.example.com.", dns.TypeA), lan, netip.Addr{},
			want{rcode: dns.RcodeNameError, aa: true, ns: []string{soaText}, verdict: VerdictDeny, reason: ReasonNotHostName}},
		{"deny refused: an address literal is REFUSED", refuse, newReq("192.0.2.1.", dns.TypeA), lan, netip.Addr{},
			want{rcode: dns.RcodeRefused, verdict: VerdictDeny, reason: ReasonNotHostName}},
		{"stub zone apex is forwarded", nil, newReq("plant.internal.", dns.TypeSOA), lan, netip.Addr{},
			want{zone: true, verdict: VerdictZone}},
		{"stub zone wins over the list", nil, newReq("Broker.Plant.Internal.", dns.TypeA), lan, netip.Addr{},
			want{zone: true, verdict: VerdictZone}},
		{"stub zone is still closed to outsiders", nil, newReq("broker.plant.internal.", dns.TypeA), netip.MustParseAddr("192.168.1.1"), netip.Addr{},
			want{rcode: dns.RcodeRefused, verdict: VerdictRefused, reason: allowlist.ReasonSourceNotAllowed}},
		{"wildcard listener answers A with the local address", wild, newReq("api.example.com.", dns.TypeA), lan, netip.MustParseAddr("127.0.0.5"),
			want{aa: true, answer: []string{"api.example.com.\t60\tIN\tA\t127.0.0.5"}, verdict: VerdictAllow, reason: allowlist.ReasonListed}},
		{"wildcard listener answers AAAA with the local address", wild, newReq("api.example.com.", dns.TypeAAAA), lan, netip.MustParseAddr("fe80::1%eth0"),
			want{aa: true, answer: []string{"api.example.com.\t60\tIN\tAAAA\tfe80::1"}, verdict: VerdictAllow, reason: allowlist.ReasonListed}},
		{"wildcard listener reached over IPv6 answers A with Answer4", wild, newReq("api.example.com.", dns.TypeA), lan, netip.MustParseAddr("::1"),
			want{aa: true, answer: allowA, verdict: VerdictAllow, reason: allowlist.ReasonListed}},
		{"wildcard listener reached over IPv4 has no AAAA", wild, newReq("api.example.com.", dns.TypeAAAA), lan, netip.MustParseAddr("127.0.0.1"),
			want{aa: true, ns: []string{soaText}, verdict: VerdictAllow, reason: allowlist.ReasonListed}},
		{"a specific listener ignores the local address", nil, newReq("api.example.com.", dns.TypeA), lan, netip.MustParseAddr("127.0.0.5"),
			want{aa: true, answer: allowA, verdict: VerdictAllow, reason: allowlist.ReasonListed}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := tc.pol
			if p == nil {
				p = testPolicy()
			}
			for _, udp := range []bool{true, false} {
				got, out := p.answer(tc.req, query{list: list, client: tc.client, local: tc.local, udp: udp})
				checkReply(t, tc.req, got, out, tc.want)
			}
		})
	}
}

func TestAnswerNilList(t *testing.T) {
	req := newReq("api.example.com.", dns.TypeA)
	got, out := testPolicy().answer(req, query{client: lan, udp: true})
	checkReply(t, req, got, out,
		want{rcode: dns.RcodeNameError, aa: true, ns: []string{soaText}, verdict: VerdictDeny, reason: allowlist.ReasonNotListed})
}

func checkReply(t *testing.T, req, got *dns.Msg, out outcome, w want) {
	t.Helper()
	if out.verdict != w.verdict || out.reason != w.reason {
		t.Errorf("outcome = %v/%q, want %v/%q", out.verdict, out.reason, w.verdict, w.reason)
	}
	switch {
	case w.silent || w.zone:
		if got != nil {
			t.Fatalf("reply = %v, want none", got)
		}
		if (out.zone != nil) != w.zone {
			t.Errorf("zone = %v, want forwarding %v", out.zone, w.zone)
		}
		return
	case got == nil:
		t.Fatal("no reply")
	}
	// RD is echoed for QUERY only (RFC 1035 §4.1.1 defines it for queries).
	rd := req.RecursionDesired && req.Opcode == dns.OpcodeQuery
	if got.Id != req.Id || !got.Response || got.RecursionAvailable || got.RecursionDesired != rd {
		t.Errorf("header id=%d qr=%v ra=%v rd=%v, want id=%d qr=true ra=false rd=%v",
			got.Id, got.Response, got.RecursionAvailable, got.RecursionDesired, req.Id, rd)
	}
	if got.Rcode != w.rcode || got.Authoritative != w.aa || got.Truncated != w.tc {
		t.Errorf("rcode=%s aa=%v tc=%v, want rcode=%s aa=%v tc=%v",
			dns.RcodeToString[got.Rcode], got.Authoritative, got.Truncated, dns.RcodeToString[w.rcode], w.aa, w.tc)
	}
	if len(req.Question) == 1 && (len(got.Question) != 1 || got.Question[0] != req.Question[0]) {
		t.Errorf("question = %v, want %v byte for byte", got.Question, req.Question)
	}
	if a := rrStrings(got.Answer); !slices.Equal(a, w.answer) {
		t.Errorf("answer = %q, want %q", a, w.answer)
	}
	if ns := rrStrings(got.Ns); !slices.Equal(ns, w.ns) {
		t.Errorf("authority = %q, want %q", ns, w.ns)
	}
	opt := ""
	if o := got.IsEdns0(); o != nil {
		opt = fmt.Sprintf("size=%d do=%v", o.UDPSize(), o.Do())
		if len(o.Option) != 0 || o.Version() != 0 {
			t.Errorf("OPT options %v version %d, want none and 0", o.Option, o.Version())
		}
	}
	if opt != w.opt {
		t.Errorf("OPT = %q, want %q", opt, w.opt)
	}
	// What the transport will send must pack, extended rcode included.
	wire, err := got.Pack()
	if err != nil {
		t.Fatalf("pack: %v", err)
	}
	var back dns.Msg
	if err := back.Unpack(wire); err != nil || back.Rcode != got.Rcode {
		t.Errorf("unpacked rcode %d (err %v), want %d", back.Rcode, err, got.Rcode)
	}
}

func rrStrings(rrs []dns.RR) []string {
	var s []string
	for _, rr := range rrs {
		s = append(s, rr.String())
	}
	return s
}

// bigResponse is a stub-zone answer with n A records, too big for 512 bytes at n ≥ 30.
func bigResponse(req *dns.Msg, n int) *dns.Msg {
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	for i := range n {
		m.Answer = append(m.Answer, &dns.A{
			Hdr: dns.RR_Header{Name: req.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 30},
			A:   netip.AddrFrom4([4]byte{10, 30, byte(i >> 8), byte(i)}).AsSlice(),
		})
	}
	m.Extra = append(m.Extra, &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}})
	return m
}

func TestRelayed(t *testing.T) {
	tests := []struct {
		name    string
		req     *dns.Msg
		records int
		udp     bool
		nilResp bool
		limit   int  // packed size at most
		tc      bool // truncated
		opt     bool
		rcode   int
	}{
		{"fits", newReq("Broker.plant.internal.", dns.TypeA), 3, true, false, 512, false, false, dns.RcodeSuccess},
		{"UDP without EDNS truncates to 512", newReq("broker.plant.internal.", dns.TypeA), 100, true, false, 512, true, false, dns.RcodeSuccess},
		{"UDP with EDNS 4096 truncates to 1232", newReq("broker.plant.internal.", dns.TypeA, withEDNS(4096, false)), 100, true, false, 1232, true, true, dns.RcodeSuccess},
		{"UDP with EDNS 100 is treated as 512", newReq("broker.plant.internal.", dns.TypeA, withEDNS(100, false)), 100, true, false, 512, true, true, dns.RcodeSuccess},
		{"TCP is not truncated", newReq("broker.plant.internal.", dns.TypeA), 100, false, false, 65535, false, false, dns.RcodeSuccess},
		{"no server answered is SERVFAIL", newReq("broker.plant.internal.", dns.TypeA, withEDNS(1232, false)), 0, true, true, 512, false, true, dns.RcodeServerFailure},
	}
	p := testPolicy()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var resp *dns.Msg
			if !tc.nilResp {
				resp = bigResponse(tc.req, tc.records)
				resp.Id = tc.req.Id + 1 // the server's ID, not the client's
			}
			got := p.relayed(tc.req, resp, query{udp: tc.udp})
			wire, err := got.Pack()
			if err != nil {
				t.Fatal(err)
			}
			if len(wire) > tc.limit {
				t.Errorf("reply is %d bytes, want at most %d", len(wire), tc.limit)
			}
			if got.Id != tc.req.Id || got.Question[0] != tc.req.Question[0] {
				t.Errorf("id %d question %v, want the client's %d %v", got.Id, got.Question, tc.req.Id, tc.req.Question)
			}
			if got.Truncated != tc.tc || got.Rcode != tc.rcode || (got.IsEdns0() != nil) != tc.opt {
				t.Errorf("tc=%v rcode=%s opt=%v, want tc=%v rcode=%s opt=%v",
					got.Truncated, dns.RcodeToString[got.Rcode], got.IsEdns0() != nil, tc.tc, dns.RcodeToString[tc.rcode], tc.opt)
			}
			if !tc.tc && !tc.nilResp && len(got.Answer) != tc.records {
				t.Errorf("%d answers, want all %d", len(got.Answer), tc.records)
			}
			if got.IsEdns0() != nil && got.IsEdns0().UDPSize() != ednsSize {
				t.Errorf("relayed OPT size %d, want the box's own %d", got.IsEdns0().UDPSize(), ednsSize)
			}
		})
	}
}
