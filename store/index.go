package store

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/lnm-project/lnm/audit"
)

// Index keys are byte strings compared lexically by the radix tree, so every part is encoded
// so that byte order is value order: integers and times as big-endian nibbles (one 4-bit digit
// per byte), addresses as 16 bytes, names reversed by label with a terminator. memdb appends
// the primary key (the seq) to every non-unique key, so within one value the entries come in
// seq order; the planner relies on that (see recordIndex.ordered).
//
// Why nibbles: go-immutable-radix copies every node on the path of an insert, edges and all.
// Byte digits give the nodes near the leaves up to 256 edges (4 KiB to copy per node per
// index per insert); nibble digits cap them at 16, which measured about a quarter less
// allocation and time per Insert, for 8 more key bytes per entry.

// recordIndex is a memdb.SingleIndexer over *audit.Record with a typed query argument Q.
// key returns the record's key and false when the record is not in the index (a sparse
// index: the table marks it AllowMissing). query builds the key, or a key prefix, for one
// argument of type Q.
type recordIndex[Q any] struct {
	key    func(r *audit.Record) ([]byte, bool)
	query  func(q Q) []byte
	layout string // the key's parts, for the schema dump
	// ordered: the entries for one exact query value come in seq order, so the newest
	// Limit can be read backwards without looking at the rest.
	ordered bool
}

// indexInfo is what the planner and the schema dump ask of an index.
type indexInfo interface {
	keyLayout() string
	seqOrdered() bool
}

func (ix *recordIndex[Q]) keyLayout() string { return ix.layout }
func (ix *recordIndex[Q]) seqOrdered() bool  { return ix.ordered }

// FromObject implements memdb.SingleIndexer.
func (ix *recordIndex[Q]) FromObject(raw any) (bool, []byte, error) {
	r, ok := raw.(*audit.Record)
	if !ok {
		return false, nil, fmt.Errorf("store: index object is %T, not *audit.Record", raw)
	}
	k, ok := ix.key(r)
	return ok, k, nil
}

// FromArgs implements memdb.Indexer. Lookups through Get and LowerBound treat the result as
// a prefix, which is how one query value finds all its entries in a non-unique index.
func (ix *recordIndex[Q]) FromArgs(args ...any) ([]byte, error) {
	if len(args) != 1 {
		return nil, fmt.Errorf("store: index takes one argument, got %d", len(args))
	}
	q, ok := args[0].(Q)
	if !ok {
		var want Q
		return nil, fmt.Errorf("store: index argument is %T, not %T", args[0], want)
	}
	return ix.query(q), nil
}

const (
	seqLen  = 16
	timeLen = 24
	addrLen = 16
)

func appendSeq(b []byte, seq uint64) []byte { return appendNibbles(b, seq, 16) }

// appendNibbles writes the low n nibbles of v, most significant first, one per byte.
func appendNibbles(b []byte, v uint64, n int) []byte {
	for i := n - 1; i >= 0; i-- {
		b = append(b, byte(v>>(4*i))&0xf)
	}
	return b
}

// appendTime encodes any time, the zero time included, so that keys sort like the times:
// seconds since 1970 with the sign bit flipped, then nanoseconds.
func appendTime(b []byte, t time.Time) []byte {
	b = appendNibbles(b, uint64(t.Unix())^(1<<63), 16)
	return appendNibbles(b, uint64(t.Nanosecond()), 8)
}

// clientAddr is the address a record is indexed and filtered by: audit.Filter compares the
// unmapped address, so ::ffff:10.0.0.1 and 10.0.0.1 are one client.
func clientAddr(r *audit.Record) (netip.Addr, bool) {
	if !r.Client.IsValid() {
		return netip.Addr{}, false
	}
	return r.Client.Addr().Unmap(), true
}

func appendAddr(b []byte, a netip.Addr) []byte {
	a16 := a.As16()
	return append(b, a16[:]...)
}

// appendReversed writes a name's labels in reverse order ("api.example.com" becomes
// "com.example.api"), so that a domain and everything below it share a key prefix.
func appendReversed(b []byte, name string) []byte {
	for {
		i := strings.LastIndexByte(name, '.')
		if i < 0 {
			return append(b, name...)
		}
		b = append(b, name[i+1:]...)
		b = append(b, '.')
		name = name[:i]
	}
}

// recordName is the name a record is found by: a dns record's question, a conn's SNI.
// It follows audit.Filter's rule.
func recordName(r *audit.Record) string {
	if r.Kind == audit.KindConn {
		return r.SNI
	}
	return r.Name
}

// nameQuery selects one name exactly, or with Below every name strictly below it.
type nameQuery struct {
	Name  string
	Below bool
}

// clientQuery selects one client's entries; with a non-zero Before, the key is an upper
// bound that sorts above every entry of that client with Time < Before (for
// ReverseLowerBound) in indexes whose key continues with the time.
type clientQuery struct {
	Addr   netip.Addr
	Before time.Time
}

// clientNameQuery is clientQuery narrowed to one name.
type clientNameQuery struct {
	Addr   netip.Addr
	Name   string
	Before time.Time
}

// seqIndex is the primary key: the record's seq, unique.
func seqIndex() *recordIndex[uint64] {
	return &recordIndex[uint64]{
		key: func(r *audit.Record) ([]byte, bool) {
			return appendSeq(make([]byte, 0, seqLen), r.Seq), true
		},
		query:   func(seq uint64) []byte { return appendSeq(make([]byte, 0, seqLen), seq) },
		layout:  "seq16n",
		ordered: true,
	}
}

// timeIndex orders records by time for ranges, age eviction and Oldest.
func timeIndex() *recordIndex[time.Time] {
	return &recordIndex[time.Time]{
		key: func(r *audit.Record) ([]byte, bool) {
			return appendTime(make([]byte, 0, timeLen+seqLen), r.Time), true
		},
		query:  func(t time.Time) []byte { return appendTime(make([]byte, 0, timeLen), t) },
		layout: "time24n seq16n",
	}
}

// clientIndex finds a client's records in seq order. Records without a client are left out.
func clientIndex() *recordIndex[clientQuery] {
	return &recordIndex[clientQuery]{
		key: func(r *audit.Record) ([]byte, bool) {
			a, ok := clientAddr(r)
			if !ok {
				return nil, false
			}
			return appendAddr(make([]byte, 0, addrLen+seqLen), a), true
		},
		query:   func(q clientQuery) []byte { return appendAddr(make([]byte, 0, addrLen), q.Addr) },
		layout:  "addr16 seq16n",
		ordered: true,
	}
}

// clientTimeIndex finds a client's records in time order, so that linking can ask for the
// latest query before a moment. Query filters use it too, at the cost of sorting.
func clientTimeIndex() *recordIndex[clientQuery] {
	return &recordIndex[clientQuery]{
		key: func(r *audit.Record) ([]byte, bool) {
			a, ok := clientAddr(r)
			if !ok {
				return nil, false
			}
			b := appendAddr(make([]byte, 0, addrLen+timeLen+seqLen), a)
			return appendTime(b, r.Time), true
		},
		query: func(q clientQuery) []byte {
			b := appendAddr(make([]byte, 0, addrLen+timeLen), q.Addr)
			if !q.Before.IsZero() {
				b = appendTime(b, q.Before)
			}
			return b
		},
		layout: "addr16 time24n seq16n",
	}
}

// clientNameIndex finds one client's queries for one name in time order: the link lookup.
func clientNameIndex() *recordIndex[clientNameQuery] {
	return &recordIndex[clientNameQuery]{
		key: func(r *audit.Record) ([]byte, bool) {
			a, ok := clientAddr(r)
			n := recordName(r)
			if !ok || n == "" {
				return nil, false
			}
			b := make([]byte, 0, addrLen+len(n)+1+timeLen+seqLen)
			b = append(appendAddr(b, a), n...)
			return appendTime(append(b, 0), r.Time), true
		},
		query: func(q clientNameQuery) []byte {
			b := make([]byte, 0, addrLen+len(q.Name)+1+timeLen)
			b = append(appendAddr(b, q.Addr), q.Name...)
			b = append(b, 0)
			if !q.Before.IsZero() {
				b = appendTime(b, q.Before)
			}
			return b
		},
		layout: "addr16 name 0x00 time24n seq16n",
	}
}

// nameIndex finds records by name (dns) or SNI (conn), the labels reversed so that a
// pattern's subtree is one key range. Records without a name are left out.
func nameIndex() *recordIndex[nameQuery] {
	return &recordIndex[nameQuery]{
		key: func(r *audit.Record) ([]byte, bool) {
			n := recordName(r)
			if n == "" {
				return nil, false
			}
			b := appendReversed(make([]byte, 0, len(n)+1+seqLen), n)
			return append(b, 0), true
		},
		query: func(q nameQuery) []byte {
			b := appendReversed(make([]byte, 0, len(q.Name)+1), q.Name)
			if q.Below {
				return append(b, '.')
			}
			return append(b, 0)
		},
		layout:  "reversed-labels 0x00 seq16n",
		ordered: true,
	}
}

// verdictIndex holds every record whose verdict is set and is not allow. Allowed records
// are most of them, and a filter for them gains nothing from an index, so leaving them out
// saves an index entry per ordinary record.
func verdictIndex() *recordIndex[string] {
	return &recordIndex[string]{
		key: func(r *audit.Record) ([]byte, bool) {
			if r.Verdict == "" || r.Verdict == audit.VerdictAllow {
				return nil, false
			}
			b := make([]byte, 0, len(r.Verdict)+1+seqLen)
			return append(append(b, r.Verdict...), 0), true
		},
		query: func(v string) []byte {
			return append(append(make([]byte, 0, len(v)+1), v...), 0)
		},
		layout:  "verdict 0x00 seq16n (not allow)",
		ordered: true,
	}
}

// connIDIndex finds the records of one connection, so a close can reuse its open's link.
func connIDIndex() *recordIndex[uint64] {
	return &recordIndex[uint64]{
		key: func(r *audit.Record) ([]byte, bool) {
			if r.ID == 0 {
				return nil, false
			}
			return appendSeq(make([]byte, 0, 2*seqLen), r.ID), true
		},
		query:   func(id uint64) []byte { return appendSeq(make([]byte, 0, seqLen), id) },
		layout:  "conn-id16n seq16n",
		ordered: true,
	}
}

// unlinkedIndex holds only records flagged unlinked: the findings an operator asks for.
func unlinkedIndex() *recordIndex[struct{}] {
	return &recordIndex[struct{}]{
		key: func(r *audit.Record) ([]byte, bool) {
			if !r.HasFlag(audit.FlagUnlinked) {
				return nil, false
			}
			return make([]byte, 0, seqLen), true
		},
		query:   func(struct{}) []byte { return nil },
		layout:  "seq16n (flagged unlinked)",
		ordered: true,
	}
}
