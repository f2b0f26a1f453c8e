package allowlist

import "net/netip"

// Policy is everything a box decides with: who may use it, the list, and the mode. The
// resolver decides DNS questions with it, the forwarder connections, and `lnm allow test`
// asks it the same questions, so there is one decision pipeline. The zero Policy admits
// anyone, allows nothing, and enforces.
type Policy struct {
	List *List
	// Sources are the devices that may use the box at all (`sources`). Empty: anyone.
	Sources Prefixes
	// Learn lets what the list denies through, marked Learned (`mode learn`). A source
	// outside Sources is refused in either mode.
	Learn bool
}

// Admits reports whether src may use the box at all.
func (p *Policy) Admits(src netip.Addr) bool {
	return len(p.Sources) == 0 || p.Sources.Contains(src)
}

// Decide decides q: a source outside Sources is denied with ReasonSourceNotAllowed (an
// invalid Source, a question asked without one, skips that check), then the list decides,
// and in learn mode a denial by the list becomes an allow with Learned set, keeping the
// list's reason and nearest rule. It does not allocate.
func (p *Policy) Decide(q Query) Decision {
	if q.Source.IsValid() && !p.Admits(q.Source) {
		return Decision{Reason: ReasonSourceNotAllowed}
	}
	d := p.List.Decide(q)
	if d.Verdict != Allow && p.Learn {
		d.Verdict, d.Learned = Allow, true
	}
	return d
}

// DecideAddr decides a connection to an address the device named itself rather than a name
// (a CONNECT to an IP literal, an HTTP Host that is an address): only a rule whose `to` is
// exactly that address and port allows it, on that port and from that device; the rule's
// pattern is not consulted, since there is no name to match. Anything else is denied with
// ReasonNotListed, in learn mode too: learn mode opens names, never addresses. It walks
// the rules; addresses are the exception.
func (p *Policy) DecideAddr(dst netip.AddrPort, src netip.Addr) Decision {
	if src.IsValid() && !p.Admits(src) {
		return Decision{Reason: ReasonSourceNotAllowed}
	}
	if p.List != nil {
		for _, r := range p.List.Ordered() {
			if r.To.Addr.IsValid() && r.To.Addr == dst.Addr().Unmap() && r.To.Port == dst.Port() &&
				r.allowsPort(dst.Port()) && r.allowsSource(src) {
				return Decision{Verdict: Allow, Reason: ReasonListed, Rule: r}
			}
		}
	}
	return Decision{Reason: ReasonNotListed}
}
