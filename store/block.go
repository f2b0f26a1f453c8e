package store

import (
	"cmp"
	"math"
	"math/bits"
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
// non-allow verdict among its records. Under load a block holds a hundred queries from a
// handful of devices for a handful of names; at a trickle it holds one.
//
// The records are kept as dnsRows, which hold no pointers: the garbage collector never scans
// them, and a query costs its row, its answers and its share of the block's string table
// rather than an audit.Record's 480 bytes of mostly pointers. A record a row cannot hold
// exactly (fields a dns record does not use, a zoned address, a time outside 1678-2262) is
// kept whole in odd.
//
// Blocks never overlap: every seq of one block is below every seq of the next (by first
// seq), so reading blocks in id order, or in any index's order for one value, reads records
// in seq order. A record that arrives after a block above its seq was inserted goes into the
// block whose range holds it, or into a block of its own in the gap (see Store.insertDNS).
//
// A block is immutable once inserted: eviction and late records replace it with a new one.
type dnsBlock struct {
	rows       []dnsRow        // seq order, no two with the same seq; never empty
	strs       []string        // the rows' strings, each once
	answers    []answerAddr    // the rows' answers, each row's in a run
	odd        []*audit.Record // records kept whole (dnsRow.odd)
	minT, maxT time.Time       // over the records
	clients    []netip.Addr    // distinct unmapped client addresses, sorted
	names      []string        // distinct names, sorted; "" left out
	buckets    uint64          // bit nameBucket(n) set for each of names: the name index's keys
	verdicts   []string        // distinct verdicts other than allow and "", sorted
}

// dnsRow is one dns record without pointers. Strings are indexes into the block's strs.
type dnsRow struct {
	seq                 uint64
	nanos               int64 // Time, Unix nanoseconds
	client              [16]byte
	port                uint16
	flags               rowFlags
	level               int32
	box, verdict, rule  uint32
	reason, name, qtype uint32
	rcode               uint32
	device, mac         uint32
	answer              uint32 // the first of the row's answers in the block's answers
	nAnswer             uint16
	odd                 uint32 // 1 + index into the block's odd; 0: the row holds the record
}

type rowFlags uint8

const (
	hasClient rowFlags = 1 << iota
	client4            // the client is IPv4 (else IPv6, 4in6 included)
	hasAnswer          // Answer is not nil (it may be empty)
)

// answerAddr is an answer address without netip.Addr's zone pointer.
type answerAddr struct {
	a  [16]byte
	v4 bool
}

// compact reports whether a dnsRow can hold r exactly.
func compact(r *audit.Record) bool {
	if r.Event != "" || r.ID != 0 || r.Port != 0 || r.SNI != "" || r.Proto != "" || r.ALPN != nil ||
		r.Upstream.IsValid() || r.Via != "" || r.QuerySeq != 0 || r.Flags != nil ||
		r.BytesUp != 0 || r.BytesDown != 0 || r.DurationMS != 0 ||
		r.Change != "" || r.Hash != "" || r.UID != nil || r.Count != 0 {
		return false
	}
	if r.Level < math.MinInt32 || r.Level > math.MaxInt32 || len(r.Answer) > math.MaxUint16 {
		return false
	}
	if r.Client.IsValid() && r.Client.Addr().Zone() != "" {
		return false
	}
	for _, a := range r.Answer {
		if a.Zone() != "" || !a.IsValid() {
			return false
		}
	}
	// UnixNano is exact from 1678 to 2262, and a row gives back a UTC time: a record in
	// another zone reads back in UTC, as it does from the log.
	return r.Time.Equal(time.Unix(0, r.Time.UnixNano()))
}

// blockBuilder makes a block's string table.
type blockBuilder struct {
	b   *dnsBlock
	idx map[string]uint32
}

func (bb *blockBuilder) str(s string) uint32 {
	if i, ok := bb.idx[s]; ok {
		return i
	}
	i := uint32(len(bb.b.strs))
	bb.b.strs = append(bb.b.strs, s)
	bb.idx[s] = i
	return i
}

// newBlock makes a block of recs, sorted by seq with seqs unique. It keeps the records that
// a row cannot hold, and nothing else of recs.
func newBlock(recs []*audit.Record) *dnsBlock {
	b := &dnsBlock{rows: make([]dnsRow, len(recs)), minT: recs[0].Time, maxT: recs[0].Time}
	bb := blockBuilder{b: b, idx: make(map[string]uint32, 8)}
	for i, r := range recs {
		if r.Time.Before(b.minT) {
			b.minT = r.Time
		}
		if r.Time.After(b.maxT) {
			b.maxT = r.Time
		}
		if a, ok := clientAddr(r); ok && !slices.Contains(b.clients, a) {
			b.clients = append(b.clients, a)
		}
		if r.Name != "" {
			b.names = append(b.names, r.Name) // made distinct below
			b.buckets |= 1 << nameBucket(r.Name)
		}
		if v := r.Verdict; v != "" && v != audit.VerdictAllow && !slices.Contains(b.verdicts, v) {
			b.verdicts = append(b.verdicts, v)
		}
		row := &b.rows[i]
		row.seq = r.Seq
		if !compact(r) {
			b.odd = append(b.odd, r)
			row.odd = uint32(len(b.odd))
			row.nanos = r.Time.UnixNano() // for ordering only
			continue
		}
		row.nanos = r.Time.UnixNano()
		if r.Client.IsValid() {
			row.flags |= hasClient
			if r.Client.Addr().Is4() {
				row.flags |= client4
			}
			row.client = r.Client.Addr().As16()
			row.port = r.Client.Port()
		}
		row.level = int32(r.Level)
		row.box, row.verdict, row.rule = bb.str(r.Box), bb.str(r.Verdict), bb.str(r.Rule)
		row.reason, row.name, row.qtype = bb.str(r.Reason), bb.str(r.Name), bb.str(r.QType)
		row.rcode = bb.str(r.Rcode)
		row.device, row.mac = bb.str(r.Device), bb.str(r.MAC)
		if r.Answer != nil {
			row.flags |= hasAnswer
			row.answer, row.nAnswer = uint32(len(b.answers)), uint16(len(r.Answer))
			for _, a := range r.Answer {
				b.answers = append(b.answers, answerAddr{a: a.As16(), v4: a.Is4()})
			}
		}
	}
	slices.SortFunc(b.clients, netip.Addr.Compare)
	slices.Sort(b.names)
	b.names = slices.Compact(b.names)
	slices.Sort(b.verdicts)
	b.clients = slices.Clip(b.clients)
	b.names = slices.Clip(b.names)
	b.verdicts = slices.Clip(b.verdicts)
	b.strs = slices.Clip(b.strs)
	b.answers = slices.Clip(b.answers)
	b.odd = slices.Clip(b.odd)
	return b
}

func (b *dnsBlock) n() int        { return len(b.rows) }
func (b *dnsBlock) first() uint64 { return b.rows[0].seq }
func (b *dnsBlock) last() uint64  { return b.rows[len(b.rows)-1].seq }

// load writes record i into r. Without answers it leaves r.Answer nil, which is all a
// filter needs and allocates nothing.
func (b *dnsBlock) load(i int, r *audit.Record, answers bool) {
	row := &b.rows[i]
	if row.odd != 0 {
		*r = *b.odd[row.odd-1]
		if !answers {
			r.Answer = nil
		}
		return
	}
	*r = audit.Record{
		Seq: row.seq, Time: time.Unix(0, row.nanos).UTC(), Kind: audit.KindDNS,
		Box: b.strs[row.box], Level: int(row.level),
		Verdict: b.strs[row.verdict], Rule: b.strs[row.rule], Reason: b.strs[row.reason],
		Name: b.strs[row.name], QType: b.strs[row.qtype], Rcode: b.strs[row.rcode],
		Device: b.strs[row.device], MAC: b.strs[row.mac],
	}
	if row.flags&hasClient != 0 {
		a := netip.AddrFrom16(row.client)
		if row.flags&client4 != 0 {
			a = a.Unmap()
		}
		r.Client = netip.AddrPortFrom(a, row.port)
	}
	if answers && row.flags&hasAnswer != 0 {
		r.Answer = make([]netip.Addr, row.nAnswer)
		for j, aa := range b.answers[row.answer : row.answer+uint32(row.nAnswer)] {
			a := netip.AddrFrom16(aa.a)
			if aa.v4 {
				a = a.Unmap()
			}
			r.Answer[j] = a
		}
	}
}

// record returns record i, whole.
func (b *dnsBlock) record(i int) *audit.Record {
	r := new(audit.Record)
	b.load(i, r, true)
	return r
}

// records returns every record, whole.
func (b *dnsBlock) records() []*audit.Record {
	out := make([]*audit.Record, b.n())
	for i := range out {
		out[i] = b.record(i)
	}
	return out
}

// find returns the index of the record with this seq.
func (b *dnsBlock) find(seq uint64) (int, bool) {
	return slices.BinarySearchFunc(b.rows, seq, func(r dnsRow, seq uint64) int {
		return cmp.Compare(r.seq, seq)
	})
}

// merged returns a new block with b's records and add's (sorted by seq, unique), a record of
// add replacing b's record of the same seq.
func (b *dnsBlock) merged(add []*audit.Record) *dnsBlock {
	held := b.records()
	recs := make([]*audit.Record, 0, len(held)+len(add))
	i, j := 0, 0
	for i < len(held) || j < len(add) {
		switch {
		case j == len(add) || (i < len(held) && held[i].Seq < add[j].Seq):
			recs = append(recs, held[i])
			i++
		case i == len(held) || add[j].Seq < held[i].Seq:
			recs = append(recs, add[j])
			j++
		default: // the same seq: the new record replaces the held one
			recs = append(recs, add[j])
			i, j = i+1, j+1
		}
	}
	return newBlock(recs)
}

// without returns a new block of b's records for which drop (by seq and time) is false,
// nil if none is left. It reads only the kept records whole.
func (b *dnsBlock) without(drop func(seq uint64, t time.Time) bool) *dnsBlock {
	var keep []*audit.Record
	for i, row := range b.rows {
		if !drop(row.seq, time.Unix(0, row.nanos)) {
			keep = append(keep, b.record(i))
		}
	}
	if len(keep) == 0 {
		return nil
	}
	return newBlock(keep)
}

// oldest returns the seqs of b's n oldest records by time, then seq.
func (b *dnsBlock) oldest(n int) map[uint64]bool {
	byAge := slices.Clone(b.rows)
	slices.SortFunc(byAge, func(x, y dnsRow) int {
		if c := cmp.Compare(x.nanos, y.nanos); c != 0 {
			return c
		}
		return cmp.Compare(x.seq, y.seq)
	})
	set := make(map[uint64]bool, n)
	for _, r := range byAge[:min(n, len(byAge))] {
		set[r.seq] = true
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

// blockBytes estimates the memory a block takes with its records: the row, its summary and
// tables, its index entries (see entryBytes), and the records kept whole.
func blockBytes(b *dnsBlock) int64 {
	entries := int64(2 + len(b.clients) + bits.OnesCount64(b.buckets) + len(b.verdicts)) // id, time, ...
	n := int64(unsafe.Sizeof(*b)) + entries*entryBytes
	n += int64(len(b.rows)) * int64(unsafe.Sizeof(dnsRow{}))
	n += int64(len(b.answers)) * int64(unsafe.Sizeof(answerAddr{}))
	for _, s := range b.strs {
		n += int64(unsafe.Sizeof(s)) + int64(len(s))
	}
	n += int64(len(b.clients)) * int64(unsafe.Sizeof(netip.Addr{}))
	n += int64(len(b.names)+len(b.verdicts)) * int64(unsafe.Sizeof(""))
	for _, r := range b.odd {
		n += int64(unsafe.Sizeof(uintptr(0))) + recordBytes(tnDNS, r)
	}
	return n
}
