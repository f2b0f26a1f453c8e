package store

import (
	"net/netip"
	"slices"
	"time"

	"github.com/hashicorp/go-memdb"

	"github.com/lnm-project/lnm/audit"
)

// Link ties a conn record to the DNS query it follows, before the record is logged and
// inserted. A conn that named a host (an SNI) and did not come through a static tcp route gets
// QuerySeq set to the latest dns record from the same client address for the same name with
// verdict allow or would-deny, at most LinkWindow before r.Time (both ends inclusive).
// Without one it is flagged unlinked, and also sni_mismatch when the same client queried
// other names within the window. Names are compared as they are: both sides were normalized
// when they came off the wire.
//
// A close (or any record with an ID but no open event) takes the link of its connection's
// open record, so open and close agree even if a query arrived in between; when the open is
// no longer held, it links as of the connection's start (r.Time less its duration).
//
// Link only reads; it replaces r's link fields and keeps any other flags.
func (s *Store) Link(r *audit.Record) {
	if r.Kind != audit.KindConn || r.SNI == "" || r.Via == "tcp" || !r.Client.IsValid() {
		return
	}
	tx := s.db.Txn(false)
	defer tx.Abort()
	seq, flags := linkTxn(tx, r, s.window)
	setLink(r, seq, flags)
}

// linkFlags are the flags Link owns.
type linkFlags struct{ unlinked, mismatch bool }

func linkTxn(tx *memdb.Txn, r *audit.Record, window time.Duration) (uint64, linkFlags) {
	at := r.Time
	if r.Event != audit.EventOpen && r.ID != 0 {
		if open := openTxn(tx, r.ID); open != nil {
			return open.QuerySeq, linkFlags{
				unlinked: open.HasFlag(audit.FlagUnlinked),
				mismatch: open.HasFlag(audit.FlagSNIMismatch),
			}
		}
		if r.Event == audit.EventClose {
			at = at.Add(-time.Duration(r.DurationMS) * time.Millisecond)
		}
	}
	addr := r.Client.Addr().Unmap()
	from := at.Add(-window)
	if q := latestQueryTxn(tx, addr, r.SNI, from, at); q != nil {
		return q.Seq, linkFlags{}
	}
	return 0, linkFlags{unlinked: true, mismatch: otherNameTxn(tx, addr, r.SNI, from, at)}
}

// openTxn finds the open record of connection id.
func openTxn(tx *memdb.Txn, id uint64) *audit.Record {
	it, err := tx.GetReverse(tableConn, indexConnID, id)
	if err != nil {
		return nil
	}
	for r := next(it); r != nil; r = next(it) {
		if r.Event == audit.EventOpen {
			return r
		}
	}
	return nil
}

// latestQueryTxn walks the client's queries for name backwards in time from at and returns
// the first that was answered (allow, or would-deny in learn mode) and is not before from.
func latestQueryTxn(tx *memdb.Txn, addr netip.Addr, name string, from, at time.Time) *audit.Record {
	it, err := tx.ReverseLowerBound(tableDNS, indexClientName,
		clientNameQuery{Addr: addr, Name: name, Before: at.Add(1)})
	if err != nil {
		return nil
	}
	for q := next(it); q != nil; q = next(it) {
		if a, _ := clientAddr(q); a != addr || q.Name != name || q.Time.Before(from) {
			return nil
		}
		if q.Verdict == audit.VerdictAllow || q.Verdict == audit.VerdictWouldDeny {
			return q
		}
	}
	return nil
}

// otherNameTxn reports whether the client asked for any name but name in [from, at].
func otherNameTxn(tx *memdb.Txn, addr netip.Addr, name string, from, at time.Time) bool {
	it, err := tx.ReverseLowerBound(tableDNS, indexClient, clientQuery{Addr: addr, Before: at.Add(1)})
	if err != nil {
		return false
	}
	for q := next(it); q != nil; q = next(it) {
		if a, _ := clientAddr(q); a != addr || q.Time.Before(from) {
			return false
		}
		if q.Name != name {
			return true
		}
	}
	return false
}

// setLink writes the link into r. r.Flags is rebuilt rather than appended to, because it may
// share its array with a record the store already holds.
func setLink(r *audit.Record, seq uint64, f linkFlags) {
	r.QuerySeq = seq
	had := linkFlags{unlinked: r.HasFlag(audit.FlagUnlinked), mismatch: r.HasFlag(audit.FlagSNIMismatch)}
	if had == f {
		return
	}
	flags := make([]string, 0, len(r.Flags)+2)
	for _, fl := range r.Flags {
		if fl != audit.FlagUnlinked && fl != audit.FlagSNIMismatch {
			flags = append(flags, fl)
		}
	}
	if f.unlinked {
		flags = append(flags, audit.FlagUnlinked)
	}
	if f.mismatch {
		flags = append(flags, audit.FlagSNIMismatch)
	}
	if len(flags) == 0 {
		flags = nil
	}
	r.Flags = slices.Clip(flags)
}
