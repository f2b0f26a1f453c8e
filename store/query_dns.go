package store

import (
	"math"
	"time"

	"github.com/hashicorp/go-memdb"

	"github.com/lnm-project/lnm/allowlist"
	"github.com/lnm-project/lnm/audit"
)

// dnsPlan is how queryDNS reads the dns table: one index, once per argument (nil: the
// whole index). Blocks never overlap, so every index but time returns them, for one
// argument, in seq order (ordered): with a Limit they are read newest first and the read
// stops at Limit matches.
type dnsPlan struct {
	index   string
	args    []any
	ordered bool
}

// planDNS picks the index for filter f, from the most selective kind of condition to the
// least: one client, one exact name, a non-allow verdict, a time range, and at last every
// block in seq order. A condition without an index of its own (a client range, a wildcard
// name) still skips blocks by their summary (dnsBlock.mayMatch) without reading them.
func planDNS(f *audit.Filter) dnsPlan {
	switch {
	case f.Client.IsValid() && f.Client.IsSingleIP():
		return dnsPlan{index: indexClient, args: []any{f.Client.Addr()}, ordered: true}
	case f.Name != nil && f.Name.Kind == allowlist.Exact:
		return dnsPlan{index: indexName, args: []any{string(f.Name.Base)}, ordered: true}
	case f.Verdict == audit.VerdictDeny:
		return dnsPlan{index: indexVerdict, args: []any{audit.VerdictDeny, audit.VerdictRefused}, ordered: true}
	case f.Verdict != "" && f.Verdict != audit.VerdictAllow:
		return dnsPlan{index: indexVerdict, args: []any{f.Verdict}, ordered: true}
	case !f.Since.IsZero() || !f.Until.IsZero():
		return dnsPlan{index: indexTime}
	}
	return dnsPlan{index: indexID, ordered: true}
}

// queryDNS appends the dns records that match f. span: see queryTxn.
func queryDNS(tx *memdb.Txn, f *audit.Filter, span time.Duration, found []*audit.Record) ([]*audit.Record, error) {
	p := planDNS(f)
	if f.Limit > 0 && !p.ordered {
		// As in queryTxn: matches dense among recent records are found sooner backwards.
		n := len(found)
		var done bool
		if found, done = probeNewestDNS(tx, f, found); done {
			return found, nil
		}
		found = found[:n]
	}
	var seen map[*dnsBlock]bool // with two arguments a block may come twice
	if len(p.args) > 1 {
		seen = map[*dnsBlock]bool{}
	}
	scans := p.args
	if scans == nil {
		scans = []any{nil}
	}
	for _, arg := range scans {
		var args []any
		if arg != nil {
			args = []any{arg}
		}
		var it memdb.ResultIterator
		var err error
		switch {
		case p.ordered && f.Limit > 0:
			it, err = tx.GetReverse(tableDNS, p.index, args...)
		case p.index == indexTime && !f.Since.IsZero():
			it, err = tx.LowerBound(tableDNS, indexTime, f.Since.Add(-span))
		default:
			it, err = tx.Get(tableDNS, p.index, args...)
		}
		if err != nil {
			return nil, err
		}
		n := 0
		pre := rowFilter(f)
		var r audit.Record // each record in turn, without its answers, for the filter
		for obj := it.Next(); obj != nil; obj = it.Next() {
			b := obj.(*dnsBlock)
			if p.index == indexTime && !f.Until.IsZero() && !b.minT.Before(f.Until) {
				break // blocks come by oldest record: none further holds one before Until
			}
			if seen != nil {
				if seen[b] {
					continue
				}
				seen[b] = true
			}
			if !b.mayMatch(f) {
				continue
			}
			if !(p.ordered && f.Limit > 0) {
				for i := range b.n() {
					if b.matches(i, pre, f, &r) {
						found = append(found, b.record(i))
					}
				}
				continue
			}
			for i := b.n() - 1; i >= 0 && n < f.Limit; i-- {
				if b.matches(i, pre, f, &r) {
					found = append(found, b.record(i))
					n++
				}
			}
			if n == f.Limit {
				break
			}
		}
	}
	return found, nil
}

// probeNewestDNS is probeNewest for the dns table: it reads blocks newest first and appends
// the newest f.Limit matches, giving up after probeBudget*f.Limit records (a block skipped
// by its summary counts as one).
func probeNewestDNS(tx *memdb.Txn, f *audit.Filter, found []*audit.Record) ([]*audit.Record, bool) {
	it, err := tx.GetReverse(tableDNS, indexID)
	if err != nil {
		return found, false
	}
	n := 0
	pre := rowFilter(f)
	budget := probeBudget * f.Limit
	for obj := it.Next(); obj != nil; obj = it.Next() {
		b := obj.(*dnsBlock)
		if !b.mayMatch(f) {
			budget--
		} else {
			var r audit.Record
			for i := b.n() - 1; i >= 0; i-- {
				if b.matches(i, pre, f, &r) {
					found = append(found, b.record(i))
					if n++; n == f.Limit {
						return found, true
					}
				}
			}
			budget -= b.n()
		}
		if budget <= 0 {
			return found, false
		}
	}
	return found, true // the whole table was read
}

// matches reports whether record i matches f: first the quick test on its row, then the
// record read into r (without its answers, which no filter looks at).
func (b *dnsBlock) matches(i int, pre func(*dnsRow) bool, f *audit.Filter, r *audit.Record) bool {
	if !pre(&b.rows[i]) {
		return false
	}
	b.load(i, r, false)
	return f.Match(r)
}

// rowFilter returns a quick test on a row, before it is read into a record: false means
// the record cannot match f (a time outside the range, another client than the one host
// asked for); true, that Match must decide. A row holding no record (odd) always passes.
func rowFilter(f *audit.Filter) func(*dnsRow) bool {
	var since, until int64 = math.MinInt64, math.MaxInt64
	if !f.Since.IsZero() {
		since = f.Since.UnixNano()
	}
	if !f.Until.IsZero() {
		until = f.Until.UnixNano()
	}
	// A host's address and its 4in6 form share their 16 bytes; Match tells them apart.
	host := f.Client.IsValid() && f.Client.IsSingleIP()
	key := f.Client.Addr().As16()
	return func(row *dnsRow) bool {
		if row.odd != 0 {
			return true
		}
		if row.nanos < since || row.nanos >= until {
			return false
		}
		return !host || (row.flags&hasClient != 0 && row.client == key)
	}
}
