package resolver

import (
	"net/netip"
	"runtime/debug"
	"time"

	"github.com/lnm-project/lnm/allowlist"
	"github.com/lnm-project/lnm/internal/dnswire"
	"github.com/miekg/dns"
)

// The fast path answers the common UDP query (see dnswire.Parse) in the read loop, without
// building a dns.Msg: the same decision as policy.answer, the same audit event, the same
// reply bytes. Whatever it does not take (other shapes, the root, names that are not host
// names, stub zones, ANY) goes to the slow path, ServeDNS, unchanged. FuzzFastPath checks
// the two agree on every query the fast path takes.

// maxNames bounds a read loop's name cache; past it the cache starts again from empty.
const maxNames = 1 << 14

// nameEntry is a question name as sent and as the allow list reads it; name "" when it is
// not a host name (the slow path answers those).
type nameEntry struct {
	qname string
	name  allowlist.Name
}

// worstReply is the longest reply the fast path writes: more than any one reply holds.
var worstReply = dnswire.Reply{Addr: netip.IPv6Unspecified(), SOA: true}

// fastState is one read loop's scratch space; the zero value is ready.
type fastState struct {
	q     dnswire.Query
	names map[string]nameEntry
	// addrs is the last answer address and the one-element slice events carry for it:
	// events are never modified once handed to OnQuery, so they may share it.
	addr  netip.Addr
	addrs []netip.Addr
}

// lookup returns the cached entry for the question name b, parsing it on a miss.
func (st *fastState) lookup(b []byte) nameEntry {
	if e, ok := st.names[string(b)]; ok {
		return e
	}
	if st.names == nil || len(st.names) >= maxNames {
		st.names = make(map[string]nameEntry, 256)
	}
	e := nameEntry{qname: string(b)}
	e.name, _ = allowlist.ParseName(e.qname)
	st.names[e.qname] = e
	return e
}

func (st *fastState) answers(a netip.Addr) []netip.Addr {
	if a != st.addr || st.addrs == nil {
		st.addr, st.addrs = a, []netip.Addr{a}
	}
	return st.addrs
}

// fastAnswer answers one datagram on the fast path, appending the reply to dst. handled
// false: the slow path must answer it (nothing was counted or recorded). A nil reply with
// handled true means no answer (the rate limit dropped it).
func (s *Server) fastAnswer(st *fastState, msg []byte, client netip.AddrPort, local netip.Addr, dst []byte) (reply []byte, handled bool) {
	if s.testHook != nil {
		return nil, false
	}
	q := &st.q
	if !dnswire.Parse(msg, q) {
		return nil, false
	}
	if dnswire.ReplyLen(q, &worstReply) > dns.MinMsgSize {
		return nil, false // a long name: the reply might need compression or truncation
	}
	e := st.lookup(q.Name())
	if e.name == "" || q.QType == dns.TypeANY {
		return nil, false
	}
	pol := s.pol.Load()
	if zoneFor(pol.zones, e.name) != nil {
		return nil, false
	}
	if s.limit != nil {
		switch s.limit.take(client.Addr(), time.Now().UnixNano()) {
		case limitTruncate:
			s.answered.Add(1)
			return dnswire.AppendReply(dst, q, &dnswire.Reply{TC: true}), true
		case limitDrop:
			s.answered.Add(1)
			return nil, true
		}
	}
	s.answered.Add(1)
	var (
		r      = dnswire.Reply{TTL: pol.ttl, EDNSSize: ednsSize}
		out    = outcome{verdict: VerdictRefused, name: e.name}
		hooked bool
	)
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("panic answering a query", "client", client, "panic", p, "stack", string(debug.Stack()))
			if !hooked {
				s.fastNotify(st, e, client, outcome{verdict: VerdictError, reason: ReasonPanic}, dns.RcodeServerFailure, netip.Addr{})
			}
			q.EDNS = false
			reply = dnswire.AppendReply(dst[:0], q, &dnswire.Reply{Rcode: dns.RcodeServerFailure})
		}
	}()
	switch {
	case !pol.serves(client.Addr()):
		out.reason = allowlist.ReasonSourceNotAllowed
	case q.QClass != dns.ClassINET:
		out.reason = ReasonClass
	case q.QType == dns.TypeAXFR || q.QType == dns.TypeIXFR:
		out.reason = ReasonZoneTransfer
	default:
		out.verdict = VerdictDeny
	}
	if out.verdict == VerdictRefused {
		r.Rcode = dns.RcodeRefused
	} else {
		dp := pol.decisionPolicy(pol.list)
		out.verdict, out.reason, out.rule = Decide(&dp, e.name, client.Addr())
		r.AA = true
		switch {
		case out.verdict == VerdictAllow, out.verdict == VerdictWouldDeny:
			if q.QType == dns.TypeA || q.QType == dns.TypeAAAA {
				r.Addr = pol.address(q.QType, local)
			}
			r.SOA = !r.Addr.IsValid()
		case out.reason == ReasonEmptyNonTerminal:
			r.SOA = true
		case pol.refuse:
			r.AA, r.Rcode = false, dns.RcodeRefused
		default:
			r.SOA, r.Rcode = true, dns.RcodeNameError
		}
	}
	hooked = true
	if err := s.fastNotify(st, e, client, out, int(r.Rcode), r.Addr); err != nil {
		s.log.Warn("answering SERVFAIL: the query could not be recorded", "client", client, "err", err)
		q.EDNS = false
		return dnswire.AppendReply(dst, q, &dnswire.Reply{Rcode: dns.RcodeServerFailure}), true
	}
	return dnswire.AppendReply(dst, q, &r), true
}

// fastNotify is notify for the fast path: the same event, built from the parsed query.
func (s *Server) fastNotify(st *fastState, e nameEntry, client netip.AddrPort, out outcome, rcode int, answer netip.Addr) error {
	if s.cfg.OnQuery == nil {
		return nil
	}
	ev := QueryEvent{
		Time:    time.Now(),
		Client:  client,
		QName:   e.qname,
		Name:    out.name,
		Type:    st.q.QType,
		Verdict: out.verdict,
		Reason:  out.reason,
		Rule:    out.rule,
		Rcode:   rcode,
	}
	if answer.IsValid() {
		ev.Answers = st.answers(answer)
	}
	return s.cfg.OnQuery(ev)
}
