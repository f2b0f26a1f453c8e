package resolver

import (
	"net/netip"
	"time"

	"github.com/lnm-project/lnm/allowlist"
)

// Verdict is what the server did with a question.
type Verdict uint8

const (
	VerdictAllow     Verdict = iota // answered from the allow list with the box's address (or NODATA for the type)
	VerdictDeny                     // NXDOMAIN, or NODATA for a name that only has allowed names below it
	VerdictRefused                  // REFUSED: outside Sources, a zone transfer, a class other than IN, NOTIFY, TSIG
	VerdictZone                     // relayed from a stub zone's servers (SERVFAIL when none answered)
	VerdictError                    // FORMERR, NOTIMP, BADVERS, or SERVFAIL after a panic
	VerdictWouldDeny                // learn mode: answered as allowed, though the list denies the name
)

func (v Verdict) String() string {
	switch v {
	case VerdictAllow:
		return "allow"
	case VerdictDeny:
		return "deny"
	case VerdictRefused:
		return "refused"
	case VerdictZone:
		return "zone"
	case VerdictError:
		return "error"
	case VerdictWouldDeny:
		return "would-deny"
	}
	return "unknown"
}

// Reasons the resolver adds to the allow list's own (see allowlist.Reasons). A client outside
// Config.Sources is refused with allowlist.ReasonSourceNotAllowed, the forwarder's word too.
const (
	ReasonEmptyNonTerminal allowlist.Reason = "empty_non_terminal" // not allowed, but allowed names lie below (NODATA, RFC 8020)
	ReasonNotHostName      allowlist.Reason = "not_host_name"      // the question is not a host name the list could hold
	ReasonZoneTransfer     allowlist.Reason = "zone_transfer"      // AXFR or IXFR
	ReasonClass            allowlist.Reason = "class_not_in"       // CHAOS (version.bind and friends) or any class but IN
	ReasonOpcode           allowlist.Reason = "opcode"             // NOTIFY, UPDATE or another opcode than QUERY
	ReasonTSIG             allowlist.Reason = "tsig"               // a signed query: the box holds no keys
	ReasonMalformed        allowlist.Reason = "malformed"          // FORMERR: question count or OPT record wrong
	ReasonEDNSVersion      allowlist.Reason = "edns_version"       // BADVERS
	ReasonZoneFailed       allowlist.Reason = "zone_failed"        // no stub-zone server answered
	ReasonPanic            allowlist.Reason = "panic"              // the handler panicked; SERVFAIL
)

// Reasons lists the reasons the resolver defines, for documentation tests.
func Reasons() []allowlist.Reason {
	return []allowlist.Reason{ReasonEmptyNonTerminal, ReasonNotHostName, ReasonZoneTransfer, ReasonClass,
		ReasonOpcode, ReasonTSIG, ReasonMalformed, ReasonEDNSVersion, ReasonZoneFailed, ReasonPanic}
}

// Verdicts lists every verdict, for documentation tests.
func Verdicts() []Verdict {
	return []Verdict{VerdictAllow, VerdictDeny, VerdictRefused, VerdictZone, VerdictError, VerdictWouldDeny}
}

// QueryEvent describes one answered question, for the audit trail and metrics.
type QueryEvent struct {
	Time    time.Time
	Client  netip.AddrPort // the querier (IPv4 addresses unmapped)
	TCP     bool           // the query came over TCP
	QName   string         // the question name exactly as sent, with its case and trailing dot
	Name    allowlist.Name // the normalized name; empty when QName is not a host name
	Type    uint16         // the question type (dns.TypeA, …)
	Verdict Verdict
	Reason  allowlist.Reason
	Rule    *allowlist.Rule // the rule that allowed the name, or the near miss that explains a denial
	Rcode   int             // the reply's rcode, extended rcodes included (BADVERS is 16)
	Answers []netip.Addr    // the A and AAAA addresses in the reply's answer section
}
