package audit

import (
	"net/netip"
	"time"

	"github.com/lnm-project/lnm/allowlist"
)

// Filter selects records. The zero Filter selects everything.
type Filter struct {
	Since, Until time.Time    // records with Since <= Time < Until; zero: unbounded
	Client       netip.Prefix // the client address lies in it; zero: any client
	// Name matches a dns record's name or a conn record's SNI; nil: any name. Records
	// without a name (config, summary, conns that sent no SNI) never match a name filter.
	Name    *allowlist.Pattern
	Verdict string // "allow", "deny", …; "deny" also selects "refused"; empty: any
	Kind    Kind   // empty: any
	Device  string // the record's device (its DHCP host name) is exactly this; empty: any
	// Origin selects conn records a child box forwarded for a device in it (Record.Origin);
	// zero: any record.
	Origin   netip.Prefix
	Unlinked bool // only conn records flagged unlinked
	Limit    int  // at most this many records, the newest; 0: no limit
}

// Match reports whether the record passes every condition except Limit.
func (f *Filter) Match(r *Record) bool {
	if !f.Since.IsZero() && r.Time.Before(f.Since) {
		return false
	}
	if !f.Until.IsZero() && !r.Time.Before(f.Until) {
		return false
	}
	if f.Kind != "" && r.Kind != f.Kind {
		return false
	}
	if f.Client.IsValid() && !(r.Client.IsValid() && f.Client.Contains(r.Client.Addr().Unmap())) {
		return false
	}
	if f.Verdict != "" && r.Verdict != f.Verdict && !(f.Verdict == VerdictDeny && r.Verdict == VerdictRefused) {
		return false
	}
	if f.Name != nil {
		n := r.Name
		if r.Kind == KindConn {
			n = r.SNI
		}
		if n == "" || !f.Name.Match(allowlist.Name(n)) {
			return false
		}
	}
	if f.Origin.IsValid() && !(r.Origin != nil && f.Origin.Contains(r.Origin.Device.Addr().Unmap())) {
		return false
	}
	if f.Device != "" && r.Device != f.Device {
		return false
	}
	if f.Unlinked && !r.HasFlag(FlagUnlinked) {
		return false
	}
	return true
}

// HasFlag reports whether the record carries the flag.
func (r *Record) HasFlag(flag string) bool {
	for _, f := range r.Flags {
		if f == flag {
			return true
		}
	}
	return false
}
