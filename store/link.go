package store

import (
	"slices"
	"time"

	"github.com/lnm-project/lnm/audit"
	"github.com/lnm-project/lnm/internal/linkindex"
)

// Link ties a conn record to the DNS query it follows, before the record is logged and
// added. A conn that named a host (an SNI) and did not come through a static tcp route gets
// QuerySeq set to a dns record from the same client address for the same name at most
// LinkWindow before r.Time (both ends inclusive): the latest that returned addresses (an
// A or AAAA answer), else the latest at all, whatever its verdict (a denied connection
// linked to its NXDOMAIN is informative). So a device that asked for A and AAAA and got
// only an IPv4 answer links to the A query, not to the empty AAAA one. Without any query
// for the name it is flagged unlinked, and also sni_mismatch when the same client queried
// other names within the window; a CONNECT tunnel (Proto "connect") is never flagged, as a
// device that uses a proxy asks it, not DNS, for names. Names are compared as they are: both sides were
// normalized when they came off the wire.
//
// A close (or any record with an ID but no open event) takes the link of its connection's
// open record, so open and close agree even if a query arrived in between; when the open is
// not known (the log refused it, or it is older than MaxAge), it links as of the
// connection's start (r.Time less its duration).
//
// Link reads the link index, which Add keeps current, never memdb: it is exact for queries
// still waiting in the queue, and costs a map lookup. It replaces r's link fields and keeps
// any other flags.
func (s *Store) Link(r *audit.Record) {
	if r.Kind != audit.KindConn || !linkindex.Linkable(r) {
		return
	}
	at := r.Time
	if r.Event != audit.EventOpen && r.ID != 0 {
		if open, ok := s.links.Open(r.ID); ok {
			setLink(r, open.Seq, open.Flags)
			return
		}
		if r.Event == audit.EventClose {
			at = at.Add(-time.Duration(r.DurationMS) * time.Millisecond)
		}
	}
	seq, flags := s.links.Lookup(r.Client.Addr().Unmap(), r.SNI, at)
	if r.Proto == audit.ProtoConnect {
		// A device with a proxy setting leaves name lookups to the proxy: no query is
		// expected, so its absence (or other names asked) is no finding.
		flags = linkindex.Flags{}
	}
	setLink(r, seq, flags)
}

// setLink writes the link into r. r.Flags is rebuilt rather than appended to, because it may
// share its array with a record the store already holds.
func setLink(r *audit.Record, seq uint64, f linkindex.Flags) {
	r.QuerySeq = seq
	had := linkindex.Flags{Unlinked: r.HasFlag(audit.FlagUnlinked), Mismatch: r.HasFlag(audit.FlagSNIMismatch)}
	if had == f {
		return
	}
	flags := make([]string, 0, len(r.Flags)+2)
	for _, fl := range r.Flags {
		if fl != audit.FlagUnlinked && fl != audit.FlagSNIMismatch {
			flags = append(flags, fl)
		}
	}
	if f.Unlinked {
		flags = append(flags, audit.FlagUnlinked)
	}
	if f.Mismatch {
		flags = append(flags, audit.FlagSNIMismatch)
	}
	if len(flags) == 0 {
		flags = nil
	}
	r.Flags = slices.Clip(flags)
}
