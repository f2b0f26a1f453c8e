package resolver

import (
	"net/netip"

	"github.com/lnm-project/lnm/allowlist"
	"github.com/miekg/dns"
)

const (
	// ednsSize is the UDP payload the server advertises and the most it sends over UDP
	// (DNS flag day 2020: 1232 avoids IP fragmentation on every common path).
	ednsSize = 1232

	soaMname = "lnm."
	soaRname = "hostmaster.lnm."
)

// policy is the part of the configuration that answers depend on. A policy is never changed
// once built: a reload builds a new one and swaps it in whole (Prepare, Commit); the list
// arrives with each query.
type policy struct {
	answer4  netip.Addr // the A answer when the local address cannot be used; invalid: NODATA
	answer6  netip.Addr // the AAAA answer likewise
	wildcard bool       // the server listens on an unspecified address: answer with the local one
	ttl      uint32
	sources  []netip.Prefix
	zones    []Zone // sorted by sortZones
	list     *allowlist.List
	learn    bool
	refuse   bool // Config.DenyRefused: denied names get REFUSED, not NXDOMAIN
}

// query is what the transport knows about a request.
type query struct {
	list   *allowlist.List
	client netip.Addr // the querier, unmapped
	local  netip.Addr // the address the query arrived on; may be invalid
	udp    bool       // the reply goes over UDP and is truncated to the client's size
}

// outcome is how an answer came about, for the audit event. A non-nil zone with a nil reply
// means the question belongs to that stub zone and must be forwarded.
type outcome struct {
	verdict Verdict
	reason  allowlist.Reason
	rule    *allowlist.Rule
	name    allowlist.Name
	zone    *Zone
}

// edns is what the request's OPT record asks of the reply.
type edns struct {
	present bool
	do      bool // DNSSEC OK, echoed (RFC 3225 §3)
	size    int  // the most the reply may be over UDP
}

// answer builds the reply to req without any I/O. A nil reply means silence (req is itself a
// response). Every reply is a new message; nothing of req is shared but the question.
func (p *policy) answer(req *dns.Msg, q query) (*dns.Msg, outcome) {
	if req.Response {
		return nil, outcome{}
	}
	m := new(dns.Msg)
	m.SetReply(req)
	out := outcome{verdict: VerdictError}
	if len(req.Question) > 0 {
		out.name, _ = allowlist.ParseName(req.Question[0].Name)
	}
	switch req.Opcode {
	case dns.OpcodeQuery:
	case dns.OpcodeNotify:
		// The box has no secondary zones; a NOTIFY is someone else's configuration error.
		out.verdict, out.reason = VerdictRefused, ReasonOpcode
		return p.finish(m, req, dns.RcodeRefused, q), out
	default:
		out.reason = ReasonOpcode
		return p.finish(m, req, dns.RcodeNotImplemented, q), out
	}
	if len(req.Question) != 1 {
		out.reason = ReasonMalformed
		return p.finish(m, req, dns.RcodeFormatError, q), out
	}
	if rcode := checkEDNS(req); rcode != dns.RcodeSuccess {
		out.reason = ReasonMalformed
		if rcode == dns.RcodeBadVers {
			out.reason = ReasonEDNSVersion
		}
		return p.finish(m, req, rcode, q), out
	}

	out.verdict = VerdictRefused
	question := req.Question[0]
	switch {
	case !p.serves(q.client):
		out.reason = allowlist.ReasonSourceNotAllowed
	case question.Qclass != dns.ClassINET:
		out.reason = ReasonClass
	case question.Qtype == dns.TypeAXFR || question.Qtype == dns.TypeIXFR:
		out.reason = ReasonZoneTransfer
	case req.IsTsig() != nil:
		out.reason = ReasonTSIG
	default:
		out.verdict = VerdictDeny
	}
	if out.verdict == VerdictRefused {
		return p.finish(m, req, dns.RcodeRefused, q), out
	}

	if question.Name == "." {
		// The root always exists: it is the apex of the box's one zone.
		out.reason = ReasonEmptyNonTerminal
		m.Authoritative = true
		if question.Qtype == dns.TypeSOA {
			m.Answer = append(m.Answer, p.soa())
			return p.finish(m, req, dns.RcodeSuccess, q), out
		}
		return p.nodata(m, req, q), out
	}
	if out.name == "" {
		out.reason = ReasonNotHostName
		return p.denied(m, req, q), out
	}
	if z := zoneFor(p.zones, out.name); z != nil {
		out.verdict, out.zone = VerdictZone, z
		return nil, out
	}

	pol := p.decisionPolicy(q.list)
	out.verdict, out.reason, out.rule = Decide(&pol, out.name, q.client)
	m.Authoritative = true
	switch {
	case out.verdict == VerdictAllow, out.verdict == VerdictWouldDeny:
		return p.allowed(m, req, q), out
	case out.reason == ReasonEmptyNonTerminal:
		return p.nodata(m, req, q), out
	}
	return p.denied(m, req, q), out
}

// denied answers a name that is not on the list: NXDOMAIN with the SOA in the authority
// section (RFC 2308, so that caches keep the answer for the SOA's negative TTL), or a bare
// REFUSED when the box is configured to refuse.
func (p *policy) denied(m, req *dns.Msg, q query) *dns.Msg {
	if p.refuse {
		m.Authoritative = false
		return p.finish(m, req, dns.RcodeRefused, q)
	}
	m.Authoritative = true
	m.Ns = append(m.Ns, p.soa())
	return p.finish(m, req, dns.RcodeNameError, q)
}

// allowed answers a question for an allowed name: the box's address for A and AAAA, NODATA for
// every other type. HTTPS and SVCB especially: their ECH keys and address hints would let a
// client bypass the box.
func (p *policy) allowed(m, req *dns.Msg, q query) *dns.Msg {
	question := req.Question[0]
	var rr dns.RR
	switch question.Qtype {
	case dns.TypeA, dns.TypeAAAA:
		rr = p.addressRR(question.Name, question.Qtype, q.local)
	case dns.TypeANY:
		// RFC 8482 §4.1: one RRset is enough; §4.2: HINFO "RFC8482" when there is none.
		rr = p.addressRR(question.Name, dns.TypeA, q.local)
		if rr == nil {
			rr = p.addressRR(question.Name, dns.TypeAAAA, q.local)
		}
		if rr == nil {
			rr = &dns.HINFO{Hdr: p.header(question.Name, dns.TypeHINFO), Cpu: "RFC8482"}
		}
	}
	if rr == nil {
		return p.nodata(m, req, q)
	}
	m.Answer = append(m.Answer, rr)
	return p.finish(m, req, dns.RcodeSuccess, q)
}

// addressRR returns the A or AAAA record owned by name (in the question's casing), or nil
// when the box has no address of that family.
func (p *policy) addressRR(name string, qtype uint16, local netip.Addr) dns.RR {
	a := p.address(qtype, local)
	if !a.IsValid() {
		return nil
	}
	if qtype == dns.TypeA {
		return &dns.A{Hdr: p.header(name, qtype), A: a.AsSlice()}
	}
	return &dns.AAAA{Hdr: p.header(name, qtype), AAAA: a.AsSlice()}
}

// address is the box's address of the family qtype asks for. On a wildcard listener that is
// the address the query arrived on, when it is of that family: the one address the device
// has proven it can reach.
func (p *policy) address(qtype uint16, local netip.Addr) netip.Addr {
	if p.wildcard && local.IsValid() {
		l := local.Unmap().WithZone("")
		if (qtype == dns.TypeA) == l.Is4() && !l.IsUnspecified() {
			return l
		}
	}
	if qtype == dns.TypeA {
		return p.answer4
	}
	return p.answer6
}

func (p *policy) header(name string, rrtype uint16) dns.RR_Header {
	return dns.RR_Header{Name: name, Rrtype: rrtype, Class: dns.ClassINET, Ttl: p.ttl}
}

// nodata is NOERROR with an empty answer and the SOA, so that caches keep the absence for
// the negative TTL (RFC 2308 §2.2).
func (p *policy) nodata(m, req *dns.Msg, q query) *dns.Msg {
	m.Ns = append(m.Ns, p.soa())
	return p.finish(m, req, dns.RcodeSuccess, q)
}

// soa is the SOA of the box's one zone (see the package doc). Its serial never changes: there
// is nothing to transfer, and a serial that moved with reloads would only look like one.
func (p *policy) soa() *dns.SOA {
	return &dns.SOA{
		Hdr:     p.header(".", dns.TypeSOA),
		Ns:      soaMname,
		Mbox:    soaRname,
		Serial:  1,
		Refresh: 3600,
		Retry:   600,
		Expire:  86400,
		Minttl:  p.ttl,
	}
}

// finish sets the rcode, adds the OPT record when the request had one, and truncates a UDP
// reply to what the client can take.
func (p *policy) finish(m, req *dns.Msg, rcode int, q query) *dns.Msg {
	m.Rcode = rcode
	e := readEDNS(req)
	if e.present && rcode != dns.RcodeFormatError {
		// A fresh OPT: the request's options (cookies, padding, unknown ones) are not echoed.
		opt := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
		opt.SetUDPSize(ednsSize)
		if e.do {
			opt.SetDo()
		}
		m.Extra = append(m.Extra, opt)
	}
	m.Compress = true
	if q.udp {
		m.Truncate(e.size)
	}
	return m
}

// relayed builds the reply to req from a stub zone server's response; resp nil means no
// server answered: SERVFAIL. The ID and question are the client's, the records the server's.
func (p *policy) relayed(req, resp *dns.Msg, q query) *dns.Msg {
	m := new(dns.Msg)
	m.SetReply(req)
	if resp == nil {
		return p.finish(m, req, dns.RcodeServerFailure, q)
	}
	m.Authoritative = resp.Authoritative
	m.RecursionAvailable = resp.RecursionAvailable
	m.Answer = resp.Answer
	m.Ns = resp.Ns
	for _, rr := range resp.Extra {
		switch rr.Header().Rrtype {
		case dns.TypeOPT, dns.TypeTSIG, dns.TypeSIG:
			// Hop by hop: the server's OPT was for the box, not for the client.
		default:
			m.Extra = append(m.Extra, rr)
		}
	}
	rcode := resp.Rcode
	if rcode > 0xF && !readEDNS(req).present {
		rcode = dns.RcodeServerFailure // an extended rcode the client cannot receive
	}
	return p.finish(m, req, rcode, q)
}

// checkEDNS returns FORMERR for more than one OPT record or one not owned by the root
// (RFC 6891 §6.1.1), BADVERS for an EDNS version the box does not speak (§6.1.3).
func checkEDNS(req *dns.Msg) int {
	var n int
	for _, rr := range req.Extra {
		opt, ok := rr.(*dns.OPT)
		if !ok {
			continue
		}
		if n++; n > 1 || opt.Hdr.Name != "." {
			return dns.RcodeFormatError
		}
		if opt.Version() != 0 {
			return dns.RcodeBadVers
		}
	}
	return dns.RcodeSuccess
}

// readEDNS reads the first OPT record. Without one the client takes 512 bytes over UDP; with
// one, what it says, at least 512 (RFC 6891 §6.2.3) and at most what the box advertises.
func readEDNS(req *dns.Msg) edns {
	opt := req.IsEdns0()
	if opt == nil {
		return edns{size: dns.MinMsgSize}
	}
	size := min(max(int(opt.UDPSize()), dns.MinMsgSize), ednsSize)
	return edns{present: true, do: opt.Do(), size: size}
}

// decisionPolicy is the box's one policy (allowlist.Policy) with the list of this query.
func (p *policy) decisionPolicy(list *allowlist.List) allowlist.Policy {
	return allowlist.Policy{List: list, Sources: p.sources, Learn: p.learn}
}

// serves reports whether client may query the box.
func (p *policy) serves(client netip.Addr) bool {
	pol := p.decisionPolicy(nil)
	return pol.Admits(client)
}

// Decide is the resolver's decision on a question for name (a host name, not in a stub
// zone) from client, made with the box's one policy: VerdictAllow for a listed name,
// VerdictWouldDeny for one that learn mode answers though the list denies it, else
// VerdictDeny with the list's reason, or ReasonEmptyNonTerminal when allowed names lie below
// name (answered NODATA, not NXDOMAIN: RFC 8020). A client outside the policy's sources is
// VerdictRefused with allowlist.ReasonSourceNotAllowed. rule is the deciding rule, or the
// nearest one for a denial. It does not allocate.
func Decide(pol *allowlist.Policy, name allowlist.Name, client netip.Addr) (v Verdict, reason allowlist.Reason, rule *allowlist.Rule) {
	d := pol.Decide(allowlist.Query{Name: name, Source: client})
	switch {
	case d.Reason == allowlist.ReasonSourceNotAllowed:
		return VerdictRefused, d.Reason, nil
	case d.Learned:
		return VerdictWouldDeny, d.Reason, d.Rule
	case d.Verdict == allowlist.Allow:
		return VerdictAllow, d.Reason, d.Rule
	case pol.List.HasNamesBelow(name):
		return VerdictDeny, ReasonEmptyNonTerminal, d.Rule
	}
	return VerdictDeny, d.Reason, d.Rule
}
