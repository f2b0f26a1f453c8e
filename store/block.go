package store

import (
	"cmp"
	"net/netip"
	"slices"
	"time"
	"unsafe"

	"github.com/lnm-project/lnm/allowlist"
	"github.com/lnm-project/lnm/audit"
)

// dnsBlock is one row of the dns table: dns records inserted together, in seq order. A box
// answers DNS far more often than it opens connections, and a memdb row costs index entries
// (radix nodes with their channels) that, per query, cost more than answering it. So a block
// holds the queries of one write transaction (up to insertBatch), and its index entries are
// per block: one id and one time entry, and one entry per distinct client, name and
// non-allow verdict among its records. Under load a block holds a few hundred queries from
// a handful of devices for a handful of names; at a trickle it holds one.
//
// Blocks never overlap: every seq of one block is below every seq of the next (by first
// seq), so reading blocks in id order, or in any index's order for one value, reads records
// in seq order. A record that arrives after a block above its seq was inserted goes into the
// block whose range holds it, or into a block of its own in the gap (see Store.insertDNS).
//
// A block is immutable once inserted: eviction and late records replace it with a new one.
type dnsBlock struct {
	recs       []*audit.Record // seq order, no two with the same seq; never empty
	minT, maxT time.Time       // over recs
	clients    []netip.Addr    // distinct unmapped client addresses, sorted
	names      []string        // distinct names, sorted; "" left out
	verdicts   []string        // distinct verdicts other than allow and "", sorted
}

// newBlock makes a block of recs, which it keeps: sorted by seq, seqs unique.
func newBlock(recs []*audit.Record) *dnsBlock {
	b := &dnsBlock{recs: recs, minT: recs[0].Time, maxT: recs[0].Time}
	for _, r := range recs {
		if r.Time.Before(b.minT) {
			b.minT = r.Time
		}
		if r.Time.After(b.maxT) {
			b.maxT = r.Time
		}
		if a, ok := clientAddr(r); ok && !slices.Contains(b.clients, a) {
			b.clients = append(b.clients, a)
		}
		if r.Name != "" && !slices.Contains(b.names, r.Name) {
			b.names = append(b.names, r.Name)
		}
		if v := r.Verdict; v != "" && v != audit.VerdictAllow && !slices.Contains(b.verdicts, v) {
			b.verdicts = append(b.verdicts, v)
		}
	}
	slices.SortFunc(b.clients, netip.Addr.Compare)
	slices.Sort(b.names)
	slices.Sort(b.verdicts)
	b.clients = slices.Clip(b.clients)
	b.names = slices.Clip(b.names)
	b.verdicts = slices.Clip(b.verdicts)
	return b
}

func (b *dnsBlock) first() uint64 { return b.recs[0].Seq }
func (b *dnsBlock) last() uint64  { return b.recs[len(b.recs)-1].Seq }

// find returns the index of the record with this seq.
func (b *dnsBlock) find(seq uint64) (int, bool) {
	return slices.BinarySearchFunc(b.recs, seq, func(r *audit.Record, seq uint64) int {
		return cmp.Compare(r.Seq, seq)
	})
}

// merged returns a new block with b's records and add's (sorted by seq, unique), a record of
// add replacing b's record of the same seq, and the records it replaced.
func (b *dnsBlock) merged(add []*audit.Record) (*dnsBlock, []*audit.Record) {
	recs := make([]*audit.Record, 0, len(b.recs)+len(add))
	var replaced []*audit.Record
	i, j := 0, 0
	for i < len(b.recs) || j < len(add) {
		switch {
		case j == len(add) || (i < len(b.recs) && b.recs[i].Seq < add[j].Seq):
			recs = append(recs, b.recs[i])
			i++
		case i == len(b.recs) || add[j].Seq < b.recs[i].Seq:
			recs = append(recs, add[j])
			j++
		default: // the same seq: the new record replaces the held one
			replaced = append(replaced, b.recs[i])
			recs = append(recs, add[j])
			i, j = i+1, j+1
		}
	}
	return newBlock(recs), replaced
}

// without returns a new block of b's records for which drop is false, nil if none is left.
func (b *dnsBlock) without(drop func(*audit.Record) bool) *dnsBlock {
	var keep []*audit.Record
	for _, r := range b.recs {
		if !drop(r) {
			keep = append(keep, r)
		}
	}
	if len(keep) == 0 {
		return nil
	}
	return newBlock(keep)
}

// oldest returns the n oldest of b's records by time, then seq, as a set of seqs.
func (b *dnsBlock) oldest(n int) map[uint64]bool {
	byAge := slices.Clone(b.recs)
	slices.SortFunc(byAge, func(x, y *audit.Record) int {
		if older(x, y) {
			return -1
		}
		if older(y, x) {
			return 1
		}
		return 0
	})
	set := make(map[uint64]bool, n)
	for _, r := range byAge[:min(n, len(byAge))] {
		set[r.Seq] = true
	}
	return set
}

// mayMatch reports whether any of b's records can match f, from the block's summary alone:
// false means none does; true, that its records must be read.
func (b *dnsBlock) mayMatch(f *audit.Filter) bool {
	switch {
	case !f.Since.IsZero() && b.maxT.Before(f.Since):
		return false
	case !f.Until.IsZero() && !b.minT.Before(f.Until):
		return false
	case f.Kind != "" && f.Kind != audit.KindDNS:
		return false
	}
	if f.Client.IsValid() && !slices.ContainsFunc(b.clients, f.Client.Contains) {
		return false
	}
	if f.Name != nil && !slices.ContainsFunc(b.names, func(n string) bool {
		return f.Name.Match(allowlist.Name(n))
	}) {
		return false
	}
	switch f.Verdict {
	case "", audit.VerdictAllow:
		return true
	case audit.VerdictDeny:
		return slices.Contains(b.verdicts, audit.VerdictDeny) || slices.Contains(b.verdicts, audit.VerdictRefused)
	}
	return slices.Contains(b.verdicts, f.Verdict)
}

// blockBytes estimates what a block costs beyond its records: the row, its summary slices
// and its index entries (see entryBytes).
func blockBytes(b *dnsBlock) int64 {
	entries := int64(2 + len(b.clients) + len(b.names) + len(b.verdicts)) // id, time, ...
	n := int64(unsafe.Sizeof(*b)) + entries*entryBytes
	n += int64(len(b.clients)) * int64(unsafe.Sizeof(netip.Addr{}))
	n += int64(len(b.names)+len(b.verdicts)) * int64(unsafe.Sizeof(""))
	return n
}
