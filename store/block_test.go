package store

import (
	"fmt"
	"math"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/lnm-project/lnm/audit"
)

// checkTables walks every table and checks what the store promises about it: dns blocks
// never overlap and come in seq order, each block's summary is what its records say, no
// seq is held twice in a table, and Stats counts exactly what is held, bytes included.
func checkTables(t *testing.T, s *Store) {
	t.Helper()
	s.wmu.Lock()
	defer s.wmu.Unlock()
	tx := s.db.Txn(false)
	defer tx.Abort()
	var count [numTables]int64
	var bytes int64
	it, err := tx.Get(tableDNS, indexID)
	if err != nil {
		t.Fatal(err)
	}
	var prev *dnsBlock
	for obj := it.Next(); obj != nil; obj = it.Next() {
		b := obj.(*dnsBlock)
		if b.n() == 0 {
			t.Fatalf("empty block")
		}
		recs := b.records()
		for i := 1; i < len(recs); i++ {
			if recs[i].Seq <= recs[i-1].Seq {
				t.Errorf("block %d: seq %d after %d", b.first(), recs[i].Seq, recs[i-1].Seq)
			}
		}
		if prev != nil && prev.last() >= b.first() {
			t.Errorf("blocks overlap: [%d,%d] and [%d,%d]", prev.first(), prev.last(), b.first(), b.last())
		}
		want := newBlock(recs)
		if !b.minT.Equal(want.minT) || !b.maxT.Equal(want.maxT) || !slices.Equal(b.clients, want.clients) ||
			!slices.Equal(b.names, want.names) || !slices.Equal(b.verdicts, want.verdicts) {
			t.Errorf("block %d: summary %+v, records say %+v", b.first(), b, want)
		}
		if span := b.maxT.Sub(b.minT); int64(span) > s.span.Load() {
			t.Errorf("block %d spans %v, more than the span %v queries assume", b.first(), span, time.Duration(s.span.Load()))
		}
		for _, r := range recs {
			if r.Kind != audit.KindDNS {
				t.Errorf("seq %d of kind %q in a dns block", r.Seq, r.Kind)
			}
		}
		count[tnDNS] += int64(b.n())
		bytes += blockBytes(b)
		prev = b
	}
	for tn := tnDNS + 1; tn < numTables; tn++ {
		it, err := tx.Get(tableNames[tn], indexID)
		if err != nil {
			t.Fatal(err)
		}
		for r := next(it); r != nil; r = next(it) {
			if tableOf(r.Kind) != tn {
				t.Errorf("seq %d of kind %q in table %s", r.Seq, r.Kind, tableNames[tn])
			}
			count[tn]++
			bytes += recordBytes(tn, r)
		}
	}
	st := s.Stats()
	if st.DNS != int(count[tnDNS]) || st.Conn != int(count[tnConn]) || st.Event != int(count[tnEvent]) || st.Bytes != bytes {
		t.Errorf("stats %+v; tables hold dns %d conn %d event %d, %d bytes", st, count[tnDNS], count[tnConn], count[tnEvent], bytes)
	}
}

// Records added in batches, out of seq order, late (below seqs already inserted) and
// again (the same seq), must read exactly as if each were inserted alone: every query
// matches a brute-force filter over the latest version of each record, and the tables stay
// consistent.
func TestBlocksMatchBruteForce(t *testing.T) {
	for seed := range uint64(8) {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 2))
			s := newStore(t, Config{})
			const n = 1500
			latest := map[uint64]audit.Record{}
			// Seqs come mostly in order, as the log gives them, some a little late, and
			// a few come back with new contents.
			order := make([]uint64, n)
			for i := range order {
				order[i] = uint64(i + 1)
			}
			for i := range order {
				if j := i + rng.IntN(40); rng.IntN(4) == 0 && j < n {
					order[i], order[j] = order[j], order[i]
				}
			}
			for i := 0; i < n; {
				batch := 1 + rng.IntN(300)
				for ; batch > 0 && i < n; batch-- {
					seq := order[i]
					i++
					if rng.IntN(30) == 0 && seq > 1 {
						seq = 1 + uint64(rng.IntN(int(seq))) // again, with new contents
					}
					r := randomRecord(rng, seq)
					if rng.IntN(2) == 0 {
						// Half the records are dns at a time that wanders against seq
						// order, as when several goroutines hand records to the log.
						r.Kind, r.Name, r.SNI, r.Flags = audit.KindDNS, r.Name+r.SNI, "", nil
					}
					if old, ok := latest[seq]; ok && tableOf(old.Kind) != tableOf(r.Kind) {
						r.Kind, r.Name, r.SNI = old.Kind, old.Name, old.SNI // same table: a replacement
						if r.Kind == audit.KindConn {
							r.Event = audit.EventOpen
						}
					}
					latest[seq] = r
					add(s, r)
				}
				s.Flush()
			}
			checkTables(t, s)
			all := make([]audit.Record, 0, len(latest))
			for _, r := range latest {
				all = append(all, r)
			}
			for range 2000 {
				f := randomFilter(rng)
				want := bruteForce(all, f)
				if got := seqs(s.Query(f)); !slices.Equal(got, want) {
					t.Fatalf("filter %+v (name %v):\ngot  %v\nwant %v", f, f.Name, got, want)
				}
			}
			for _, seq := range []uint64{1, n / 2, n} {
				got, ok := s.Get(seq)
				if want := latest[seq]; !ok || got.Seq != seq || got.Name != want.Name || !got.Time.Equal(want.Time) {
					t.Errorf("Get(%d) = %+v, %v; want %+v", seq, got, ok, want)
				}
			}
		})
	}
}

// Age eviction trims a block that holds both old and young records, and count eviction
// takes a block's oldest records first, keeping the rest in a new block.
func TestEvictTrimsBlocks(t *testing.T) {
	clk := newClock()
	s := newStore(t, Config{MaxAge: time.Hour, Now: clk.Now})
	for i := range 10 {
		add(s, dnsAt(uint64(i+1), time.Duration(i)*time.Minute, "10.3.0.7", fmt.Sprintf("n%d.example.com", i), audit.VerdictAllow))
	}
	s.Flush() // one block, times t0 .. t0+9m
	clk.Advance(time.Hour + 4*time.Minute + 30*time.Second)
	s.Evict()
	if got, want := heldSeqs(s), []uint64{6, 7, 8, 9, 10}; !slices.Equal(got, want) {
		t.Fatalf("after age eviction hold %v, want %v", got, want)
	}
	if st := s.Stats(); st.Evicted != 5 {
		t.Errorf("evicted %d, want 5", st.Evicted)
	}
	checkTables(t, s)
	if got, want := s.Oldest(), t0.Add(5*time.Minute); !got.Equal(want) {
		t.Errorf("Oldest %v, want %v", got, want)
	}
	if n := len(s.Query(audit.Filter{Name: pattern(t, "n2.example.com")})); n != 0 {
		t.Errorf("an evicted name still finds %d records", n)
	}

	// Count: a bound of 3 keeps the 3 newest by time, whatever their seq order.
	s2 := newStore(t, Config{MaxRecords: 100, Now: newClock().Now})
	for i, off := range []int{5, 1, 4, 2, 3} {
		add(s2, dnsAt(uint64(i+1), time.Duration(off)*time.Second, "10.3.0.7", "a.example.com", audit.VerdictAllow))
	}
	s2.Flush()
	s2.maxRecords = 3
	s2.Evict()
	if got, want := heldSeqs(s2), []uint64{1, 3, 5}; !slices.Equal(got, want) {
		t.Errorf("count eviction keeps %v, want %v (times 5s, 4s, 3s)", got, want)
	}
	checkTables(t, s2)
}

// A client-range and a wildcard-name query skip blocks by their summaries: a block is
// read only when one of its clients or names can match.
func TestBlockMayMatch(t *testing.T) {
	r1 := dnsAt(1, 0, "10.3.0.7", "a.example.com", audit.VerdictAllow)
	r2 := dnsAt(2, time.Second, "10.3.0.9", "b.example.net", audit.VerdictRefused)
	b := newBlock([]*audit.Record{&r1, &r2})
	for _, tc := range []struct {
		f    audit.Filter
		want bool
	}{
		{audit.Filter{}, true},
		{audit.Filter{Client: netip.MustParsePrefix("10.3.0.8/31")}, true},
		{audit.Filter{Client: netip.MustParsePrefix("10.3.0.0/30")}, false},
		{audit.Filter{Name: pattern(t, "*.example.net")}, true},
		{audit.Filter{Name: pattern(t, "*.example.org")}, false},
		{audit.Filter{Verdict: audit.VerdictDeny}, true}, // refused counts as deny
		{audit.Filter{Verdict: audit.VerdictWouldDeny}, false},
		{audit.Filter{Since: t0.Add(2 * time.Second)}, false},
		{audit.Filter{Until: t0}, false},
		{audit.Filter{Since: t0.Add(time.Second), Until: t0.Add(2 * time.Second)}, true},
		{audit.Filter{Kind: audit.KindConn}, false},
	} {
		if got := b.mayMatch(&tc.f); got != tc.want {
			t.Errorf("mayMatch(%+v) = %v, want %v", tc.f, got, tc.want)
		}
	}
}

// A block gives back every record it was made of: from its rows for ordinary dns records
// (times in UTC, as the log reads them back), whole for those a row cannot hold.
func TestBlockRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	addrs := []string{"10.3.0.7", "::ffff:10.3.0.8", "2001:db8::7", "fe80::1%eth0", "0.0.0.0", "::"}
	strs := []string{"", "A", "AAAA", "NXDOMAIN", "allow", "deny", "api.example.com", "*.example.com (lnm.allow:3)", "\x00odd\xff", "é"}
	uid := 1000
	var recs []*audit.Record
	var odd int
	for i := range 3000 {
		r := &audit.Record{
			Seq: uint64(i + 1), Kind: audit.KindDNS, Level: rng.IntN(5),
			Time: time.Unix(1_700_000_000+int64(rng.IntN(1000)), int64(rng.IntN(1e9))).In(time.FixedZone("x", 3600)),
			Box:  strs[rng.IntN(len(strs))],
			Name: strs[rng.IntN(len(strs))], QType: strs[rng.IntN(len(strs))], Rcode: strs[rng.IntN(len(strs))],
			Verdict: strs[rng.IntN(len(strs))], Rule: strs[rng.IntN(len(strs))], Reason: strs[rng.IntN(len(strs))],
		}
		if rng.IntN(5) > 0 {
			r.Client = netip.AddrPortFrom(netip.MustParseAddr(addrs[rng.IntN(len(addrs))]), uint16(rng.IntN(3)))
		}
		switch rng.IntN(4) {
		case 0: // nil
		case 1:
			r.Answer = []netip.Addr{}
		default:
			for range 1 + rng.IntN(3) {
				r.Answer = append(r.Answer, netip.MustParseAddr(addrs[rng.IntN(len(addrs))]))
			}
			r.Answer = slices.Clip(r.Answer)
		}
		switch rng.IntN(40) { // now and then a field a row has no room for
		case 0:
			r.Flags = []string{audit.FlagUnlinked}
		case 1:
			r.UID = &uid
		case 2:
			r.Time = time.Time{}
		case 3:
			r.Level = math.MaxInt32 + 1
		}
		if !compact(r) {
			odd++
		}
		recs = append(recs, r)
	}
	if odd < 100 || odd > 2000 {
		t.Fatalf("%d of %d records need keeping whole: the test no longer covers both kinds", odd, len(recs))
	}
	b := newBlock(recs)
	got := b.records()
	for i, r := range recs {
		want := *r
		g := *got[i]
		if !g.Time.Equal(want.Time) {
			t.Fatalf("seq %d: time %v, want %v", want.Seq, g.Time, want.Time)
		}
		if compact(r) {
			if g.Time.Location() != time.UTC {
				t.Fatalf("seq %d: time in %v, want UTC", want.Seq, g.Time.Location())
			}
			want.Time = want.Time.UTC()
		}
		if !reflect.DeepEqual(g, want) {
			t.Fatalf("seq %d:\ngot  %+v\nwant %+v", want.Seq, g, want)
		}
	}
	if i, ok := b.find(1234); !ok || b.record(i).Seq != 1234 {
		t.Errorf("find(1234) = %d, %v", i, ok)
	}
}
