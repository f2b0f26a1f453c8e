package store

import (
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
				for i := range b.recs {
					if f.Match(b.recs[i]) {
						found = append(found, b.recs[i])
					}
				}
				continue
			}
			for i := len(b.recs) - 1; i >= 0 && n < f.Limit; i-- {
				if f.Match(b.recs[i]) {
					found = append(found, b.recs[i])
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
	budget := probeBudget * f.Limit
	for obj := it.Next(); obj != nil; obj = it.Next() {
		b := obj.(*dnsBlock)
		if !b.mayMatch(f) {
			budget--
		} else {
			for i := len(b.recs) - 1; i >= 0; i-- {
				if f.Match(b.recs[i]) {
					found = append(found, b.recs[i])
					if n++; n == f.Limit {
						return found, true
					}
				}
			}
			budget -= len(b.recs)
		}
		if budget <= 0 {
			return found, false
		}
	}
	return found, true // the whole table was read
}
