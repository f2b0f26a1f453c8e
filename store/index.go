package store

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"net/netip"
	"time"

	"github.com/lnm-project/lnm/audit"
)

// Index keys are byte strings compared lexically by the radix tree, so every part is encoded
// so that byte order is value order: integers big-endian, times as seconds (sign bit flipped)
// then nanoseconds, addresses as 16 bytes, strings with a 0x00 terminator. memdb appends the
// primary key (the seq) to every non-unique key, so within one value the entries come in seq
// order; the planner relies on that (see recordIndex.ordered).
//
// Why whole bytes: an earlier encoding spent one byte per 4-bit digit so that no radix node
// had more than 16 edges, because go-immutable-radix copies a node's edges on every insert
// that passes through it. Inserts now come in batches of one transaction, in which a node
// is copied once and then written in place, so the wide nodes near the leaves are copied
// once per batch rather than once per record. Measured on this schema (300,000 typical
// records, batches of 64 to 1,024): nibble keys were no faster and took 10% more memory.

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
func (ix *recordIndex[Q]) FromArgs(args ...any) ([]byte, error) { return fromArgs(ix.query, args) }

const (
	seqLen  = 8
	timeLen = 12
	addrLen = 16
)

func appendSeq(b []byte, seq uint64) []byte { return binary.BigEndian.AppendUint64(b, seq) }

// appendTime encodes any time, the zero time included, so that keys sort like the times:
// seconds since 1970 with the sign bit flipped, then nanoseconds.
func appendTime(b []byte, t time.Time) []byte {
	b = binary.BigEndian.AppendUint64(b, uint64(t.Unix())^(1<<63))
	return binary.BigEndian.AppendUint32(b, uint32(t.Nanosecond()))
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

// stringKey encodes s as a key part: its bytes and a 0x00 terminator, so that one value is
// never a prefix of another's entries. room is what the caller (or memdb, which appends the
// seq) will append.
func stringKey(s string, room int) []byte {
	return append(append(make([]byte, 0, len(s)+1+room), s...), 0)
}

// queryString is the lookup key for one string value: every entry with it has it as prefix.
func queryString(s string) []byte { return stringKey(s, 0) }

// stringKeys is one key per value, for a block's multi-valued indexes.
func stringKeys(vals []string) [][]byte {
	keys := make([][]byte, len(vals))
	for i, v := range vals {
		keys[i] = stringKey(v, seqLen)
	}
	return keys
}

// seqIndex is the primary key: the record's seq, unique.
func seqIndex() *recordIndex[uint64] {
	return &recordIndex[uint64]{
		key: func(r *audit.Record) ([]byte, bool) {
			return appendSeq(make([]byte, 0, seqLen), r.Seq), true
		},
		query:   func(seq uint64) []byte { return appendSeq(make([]byte, 0, seqLen), seq) },
		layout:  "seq8",
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
		layout: "time12 seq8",
	}
}

// clientIndex finds a client's records in seq order. Records without a client are left out.
func clientIndex() *recordIndex[netip.Addr] {
	return &recordIndex[netip.Addr]{
		key: func(r *audit.Record) ([]byte, bool) {
			a, ok := clientAddr(r)
			if !ok {
				return nil, false
			}
			return appendAddr(make([]byte, 0, addrLen+seqLen), a), true
		},
		query:   func(a netip.Addr) []byte { return appendAddr(make([]byte, 0, addrLen), a) },
		layout:  "addr16 seq8",
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
			return stringKey(r.Verdict, seqLen), true
		},
		query:   queryString,
		layout:  "verdict 0x00 seq8 (not allow)",
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
		layout:  "seq8 (flagged unlinked)",
		ordered: true,
	}
}

// blockKey is a memdb.SingleIndexer over dns blocks: one key per block.
type blockKey[Q any] struct {
	key     func(b *dnsBlock) []byte
	query   func(q Q) []byte
	layout  string
	ordered bool
}

func (ix *blockKey[Q]) keyLayout() string { return ix.layout }
func (ix *blockKey[Q]) seqOrdered() bool  { return ix.ordered }

// FromObject implements memdb.SingleIndexer.
func (ix *blockKey[Q]) FromObject(raw any) (bool, []byte, error) {
	b, ok := raw.(*dnsBlock)
	if !ok {
		return false, nil, fmt.Errorf("store: index object is %T, not *dnsBlock", raw)
	}
	return true, ix.key(b), nil
}

// FromArgs implements memdb.Indexer.
func (ix *blockKey[Q]) FromArgs(args ...any) ([]byte, error) { return fromArgs(ix.query, args) }

// blockKeys is a memdb.MultiIndexer over dns blocks: a key for each distinct value among
// the block's records, none when the block has no record in the index (AllowMissing).
type blockKeys[Q any] struct {
	keys   func(b *dnsBlock) [][]byte
	query  func(q Q) []byte
	layout string
}

func (ix *blockKeys[Q]) keyLayout() string { return ix.layout }
func (ix *blockKeys[Q]) seqOrdered() bool  { return true }

// FromObject implements memdb.MultiIndexer.
func (ix *blockKeys[Q]) FromObject(raw any) (bool, [][]byte, error) {
	b, ok := raw.(*dnsBlock)
	if !ok {
		return false, nil, fmt.Errorf("store: index object is %T, not *dnsBlock", raw)
	}
	keys := ix.keys(b)
	return len(keys) > 0, keys, nil
}

// FromArgs implements memdb.Indexer.
func (ix *blockKeys[Q]) FromArgs(args ...any) ([]byte, error) { return fromArgs(ix.query, args) }

// fromArgs builds a key from the one typed argument an index takes.
func fromArgs[Q any](query func(Q) []byte, args []any) ([]byte, error) {
	if len(args) != 1 {
		return nil, fmt.Errorf("store: index takes one argument, got %d", len(args))
	}
	q, ok := args[0].(Q)
	if !ok {
		var want Q
		return nil, fmt.Errorf("store: index argument is %T, not %T", args[0], want)
	}
	return query(q), nil
}

// blockSeqIndex is the dns table's primary key: the block's first seq. Blocks never overlap,
// so it orders records too.
func blockSeqIndex() *blockKey[uint64] {
	return &blockKey[uint64]{
		key:     func(b *dnsBlock) []byte { return appendSeq(make([]byte, 0, seqLen), b.first()) },
		query:   func(seq uint64) []byte { return appendSeq(make([]byte, 0, seqLen), seq) },
		layout:  "first-seq8",
		ordered: true,
	}
}

// blockTimeIndex orders blocks by their oldest record, for ranges, eviction and Oldest. A
// range that starts at T reads from T less the widest block's span (Store.span).
func blockTimeIndex() *blockKey[time.Time] {
	return &blockKey[time.Time]{
		key:    func(b *dnsBlock) []byte { return appendTime(make([]byte, 0, timeLen+seqLen), b.minT) },
		query:  func(t time.Time) []byte { return appendTime(make([]byte, 0, timeLen), t) },
		layout: "min-time12 first-seq8",
	}
}

// blockClientIndex finds the blocks that hold a client's queries, in seq order.
func blockClientIndex() *blockKeys[netip.Addr] {
	return &blockKeys[netip.Addr]{
		keys: func(b *dnsBlock) [][]byte {
			keys := make([][]byte, len(b.clients))
			for i, a := range b.clients {
				keys[i] = appendAddr(make([]byte, 0, addrLen+seqLen), a)
			}
			return keys
		},
		query:  func(a netip.Addr) []byte { return appendAddr(make([]byte, 0, addrLen), a) },
		layout: "addr16 first-seq8 (each client in the block)",
	}
}

// blockNameIndex finds the blocks that may hold queries for one name, in seq order: those
// holding a name of its bucket (nameBucket), which the query then checks against the
// block's names. A busy block holds hundreds of names, and an entry for each cost more than
// the rest of its insert: every entry copies the radix-tree nodes on its path, and the
// nodes above the seq's last bytes hold up to 256 edges. At most nameBuckets entries keep
// the index selective while blocks are small and cheap when they are large.
func blockNameIndex() *blockKeys[string] {
	return &blockKeys[string]{
		keys: func(b *dnsBlock) [][]byte {
			keys := make([][]byte, 0, bits.OnesCount64(b.buckets))
			for m := b.buckets; m != 0; m &= m - 1 {
				keys = append(keys, append(make([]byte, 0, 1+seqLen), byte(bits.TrailingZeros64(m))))
			}
			return keys
		},
		query:  func(name string) []byte { return []byte{nameBucket(name)} },
		layout: "name-bucket1 first-seq8 (each bucket of the block's names, FNV-1a of the name mod 16)",
	}
}

const nameBuckets = 16 // the name index's keys: with 64, busy blocks' inserts cost 15-20% more CPU

// nameBucket is the name index's key for a name: its FNV-1a hash mod nameBuckets.
func nameBucket(name string) byte {
	h := uint32(2166136261)
	for i := 0; i < len(name); i++ {
		h = (h ^ uint32(name[i])) * 16777619
	}
	return byte(h % nameBuckets)
}

// blockVerdictIndex finds the blocks that hold queries with one verdict other than allow.
func blockVerdictIndex() *blockKeys[string] {
	return &blockKeys[string]{
		keys:   func(b *dnsBlock) [][]byte { return stringKeys(b.verdicts) },
		query:  queryString,
		layout: "verdict 0x00 first-seq8 (each verdict in the block but allow)",
	}
}

// sniIndex finds the connections to one name (their SNI), in seq order. Connections without
// an SNI (a static tcp route, a hello that named nothing) are left out.
func sniIndex() *recordIndex[string] {
	return &recordIndex[string]{
		key: func(r *audit.Record) ([]byte, bool) {
			if r.SNI == "" {
				return nil, false
			}
			return stringKey(r.SNI, seqLen), true
		},
		query:   queryString,
		layout:  "sni 0x00 seq8",
		ordered: true,
	}
}
