package forwarder

import (
	"net/netip"

	"github.com/lnm-project/lnm/allowlist"
)

// Via says which way an allowed stream leaves the box.
type Via string

const (
	ViaParent Via = "parent" // to the parent box, which decides again
	ViaDirect Via = "direct" // to an address the SNI resolves to (top level)
	ViaTo     Via = "to"     // to a rule's fixed destination (east-west)
	ViaTCP    Via = "tcp"    // a static TCP route, no SNI
)

// Decision is what the forwarder does with one ClientHello.
type Decision struct {
	Verdict allowlist.Verdict
	// Learned is set in learn mode when the list denied the stream and it was let through.
	Learned bool
	// Reason is the allow list's reason (allowlist.ReasonListed, ReasonNotListed,
	// ReasonPortNotAllowed, ReasonFromMismatch), or ReasonRoute for a static route.
	Reason allowlist.Reason
	// Rule decided the stream, or for a denial is the nearest rule that matched the name.
	Rule *allowlist.Rule
	// Via and To say where an allowed stream goes; To is set only for ViaTo.
	Via Via
	To  allowlist.Target
}

// Decide is the forwarder's decision on one ClientHello, made with the box's one policy
// (allowlist.Policy: sources, list, mode): the SNI, the port the device connected to and its
// address must match a rule. An allowed stream goes to the rule's fixed destination if it has
// one, else to the parent if there is one, else to the name itself; one that learn mode lets
// through (Learned, recorded VerdictWouldDeny with the list's reason) goes to the parent or
// the name.
func Decide(pol *allowlist.Policy, sni allowlist.Name, port uint16, src netip.Addr, hasParent bool) Decision {
	ad := pol.Decide(allowlist.Query{Name: sni, Port: port, Source: src})
	d := Decision{Verdict: ad.Verdict, Learned: ad.Learned, Reason: ad.Reason, Rule: ad.Rule}
	switch {
	case ad.Verdict != allowlist.Allow:
	case !ad.Learned && !ad.Rule.To.IsZero():
		d.Via, d.To = ViaTo, ad.Rule.To
	case hasParent:
		d.Via = ViaParent
	default:
		d.Via = ViaDirect
	}
	return d
}

// eventVerdict is the verdict an allowed or learned stream's events carry.
func (d Decision) eventVerdict() Verdict {
	switch {
	case d.Learned:
		return VerdictWouldDeny
	case d.Verdict == allowlist.Allow:
		return VerdictAllow
	}
	return VerdictDeny
}
