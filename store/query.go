package store

import (
	"bytes"
	"net/netip"
	"slices"
	"time"

	"github.com/hashicorp/go-memdb"

	"github.com/lnm-project/lnm/allowlist"
	"github.com/lnm-project/lnm/audit"
)

// Query returns the records that match f, in seq order; with f.Limit, the newest Limit of
// them. In each table it reads one index chosen from the filter (see plan) and checks every
// candidate with f.Match, so an index only ever narrows the search and never changes the
// answer. It Flushes first, so it sees every record added before it was called. The records
// share their slices with the store: don't modify their elements.
func (s *Store) Query(f audit.Filter) []audit.Record {
	s.Flush()
	tx := s.db.Txn(false)
	defer tx.Abort()
	found, err := queryTxn(tx, s.schema, &f, time.Duration(s.span.Load()))
	if err != nil {
		panic(err) // a plan names an index or argument the schema lacks: a bug
	}
	out := make([]audit.Record, len(found))
	for i, r := range found {
		out[i] = *r
	}
	return out
}

// queryTxn finds the records that match f in tx. span is the widest dns block's time span
// (Store.span), read after tx was taken.
func queryTxn(tx *memdb.Txn, sch *memdb.DBSchema, f *audit.Filter, span time.Duration) ([]*audit.Record, error) {
	if f.Name != nil && f.Name.Base == "" {
		return nil, nil // matches nothing
	}
	var found []*audit.Record
	for tn, table := range tableNames {
		if f.Kind != "" && tableOf(f.Kind) != tn {
			continue
		}
		if tn == tnDNS {
			var err error
			if found, err = queryDNS(tx, f, span, found); err != nil {
				return nil, err
			}
			continue
		}
		p := plan(sch.Tables[table], f)
		if f.Limit > 0 && p.wide {
			// An unordered plan must read every candidate before it knows the newest.
			// A range may hold many; when matches are dense among recent records
			// (--since 1m, a wide pattern), reading the table backwards finds them sooner:
			// try that within a budget.
			n := len(found)
			var done bool
			found, done = probeNewest(tx, table, f, found)
			if done {
				continue
			}
			found = found[:n]
		}
		var err error
		if found, err = p.collect(tx, table, f, found); err != nil {
			return nil, err
		}
	}
	slices.SortFunc(found, func(a, b *audit.Record) int {
		switch {
		case a.Seq < b.Seq:
			return -1
		case a.Seq > b.Seq:
			return 1
		}
		return 0
	})
	if f.Limit > 0 && len(found) > f.Limit {
		found = found[len(found)-f.Limit:]
	}
	return found, nil
}

// scan is one read of one index: every entry for one query value (arg), or with stop a
// range from arg onwards that ends at the first record stop accepts.
type scan struct {
	index string
	arg   any // nil: the whole index
	stop  func(*audit.Record) bool
}

// readPlan is the scans that together find a superset of a table's matches. ordered: each
// scan returns records in seq order, so with a Limit each can be read backwards and stop
// after Limit matches; otherwise every candidate is read and the result sorted.
type readPlan struct {
	scans   []scan
	ordered bool
	wide    bool // a range of values (addresses, names, times) rather than one value
}

// next returns the iterator's next record, or nil at the end.
func next(it memdb.ResultIterator) *audit.Record {
	if obj := it.Next(); obj != nil {
		return obj.(*audit.Record)
	}
	return nil
}

// plan picks the index to read in table t for filter f, from the most selective kind of
// condition to the least: one client, one exact name, the unlinked flag, a non-allow
// verdict, a client range, a time range, and at last the whole table in seq order; a table
// without the index for a condition goes on to the next. Allowed records are not in the
// verdict index (most records are allowed, so it would not narrow anything). A wildcard
// name with a Limit reads the newest records backwards until it has enough (probeNewest,
// or the whole table in seq order).
func plan(t *memdb.TableSchema, f *audit.Filter) readPlan {
	has := func(index string) bool { _, ok := t.Indexes[index]; return ok }
	ordered := func(index string) bool {
		info, ok := t.Indexes[index].Indexer.(indexInfo)
		return ok && info.seqOrdered()
	}
	one := func(index string, arg any) readPlan {
		return readPlan{scans: []scan{{index: index, arg: arg}}, ordered: ordered(index)}
	}
	host := f.Client.IsValid() && f.Client.IsSingleIP()

	switch {
	case host && has(indexClient):
		return one(indexClient, f.Client.Addr())
	case f.Name != nil && f.Name.Kind == allowlist.Exact && has(indexName):
		return one(indexName, string(f.Name.Base))
	case f.Unlinked && has(indexUnlinked):
		return one(indexUnlinked, nil)
	case f.Verdict != "" && f.Verdict != audit.VerdictAllow && has(indexVerdict):
		p := one(indexVerdict, f.Verdict)
		if f.Verdict == audit.VerdictDeny {
			p.scans = append(p.scans, scan{index: indexVerdict, arg: audit.VerdictRefused})
		}
		return p
	case f.Client.IsValid() && has(indexClient):
		first, last := prefixRange(f.Client)
		return readPlan{wide: true, scans: []scan{{
			index: indexClient,
			arg:   first,
			stop: func(r *audit.Record) bool {
				a, _ := clientAddr(r)
				a16 := a.As16()
				return bytes.Compare(a16[:], last[:]) > 0
			},
		}}}
	case !f.Since.IsZero() || !f.Until.IsZero():
		return readPlan{wide: true, scans: []scan{{
			index: indexTime,
			arg:   f.Since,
			stop:  func(r *audit.Record) bool { return !f.Until.IsZero() && !r.Time.Before(f.Until) },
		}}}
	}
	return one(indexID, nil)
}

// probeBudget is how many records per wanted record probeNewest reads at most.
const probeBudget = 64

// probeNewest reads table backwards in seq order and appends the newest f.Limit matches. It
// gives up after probeBudget*f.Limit records and reports whether it found them all.
func probeNewest(tx *memdb.Txn, table string, f *audit.Filter, found []*audit.Record) ([]*audit.Record, bool) {
	it, err := tx.GetReverse(table, indexID)
	if err != nil {
		return found, false
	}
	n := 0
	for budget := probeBudget * f.Limit; budget > 0; budget-- {
		r := next(it)
		if r == nil {
			return found, true // the whole table was read
		}
		if f.Match(r) {
			found = append(found, r)
			if n++; n == f.Limit {
				return found, true
			}
		}
	}
	return found, false
}

// prefixRange returns a client prefix's first address and its last as a 16-byte key.
func prefixRange(p netip.Prefix) (netip.Addr, [16]byte) {
	p = p.Masked()
	first := p.Addr()
	bits := p.Bits()
	if first.Is4() {
		bits += 96
	}
	last := first.As16()
	for i := bits; i < 128; i++ {
		last[i/8] |= 0x80 >> (i % 8)
	}
	return first, last
}

// collect appends table's records that match f, as p reads them.
func (p readPlan) collect(tx *memdb.Txn, table string, f *audit.Filter, found []*audit.Record) ([]*audit.Record, error) {
	for _, sc := range p.scans {
		var args []any
		if sc.arg != nil {
			args = []any{sc.arg}
		}
		if p.ordered && f.Limit > 0 {
			it, err := tx.GetReverse(table, sc.index, args...)
			if err != nil {
				return nil, err
			}
			n := 0
			for r := next(it); r != nil && n < f.Limit; r = next(it) {
				if f.Match(r) {
					found = append(found, r)
					n++
				}
			}
			continue
		}
		var it memdb.ResultIterator
		var err error
		if sc.stop != nil {
			it, err = tx.LowerBound(table, sc.index, args...)
		} else {
			it, err = tx.Get(table, sc.index, args...)
		}
		if err != nil {
			return nil, err
		}
		for r := next(it); r != nil; r = next(it) {
			if sc.stop != nil && sc.stop(r) {
				break
			}
			if f.Match(r) {
				found = append(found, r)
			}
		}
	}
	return found, nil
}
