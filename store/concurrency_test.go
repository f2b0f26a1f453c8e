package store

import (
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/lnm-project/lnm/audit"
)

// Writers insert while readers query, link and read stats and an evictor runs; under -race
// this checks that the store's own state (counters, schema, clipped slices) is shared safely.
// Every result must be a consistent snapshot: sorted, matching its filter, within bounds.
func TestConcurrentInsertQuery(t *testing.T) {
	const (
		writers   = 4
		perWriter = 1000
		max       = 1500
	)
	clk := newClock()
	s := newStore(t, Config{MaxRecords: max, Now: clk.Now})
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range perWriter {
				seq := uint64(w*perWriter + i + 1)
				client := fmt.Sprintf("10.3.0.%d", w+1)
				off := time.Duration(seq) * time.Millisecond
				if i%2 == 0 {
					s.Insert(dnsAt(seq, off, client, "www.example.com", audit.VerdictAllow))
					continue
				}
				c := connAt(seq, off, client+":4000", "www.example.com", "parent")
				s.Link(&c)
				s.Insert(c)
			}
		})
	}
	stop := make(chan struct{})
	var readers sync.WaitGroup
	filters := []audit.Filter{
		{},
		{Limit: 50},
		{Client: netip.MustParsePrefix("10.3.0.2/32"), Limit: 20},
		{Client: netip.MustParsePrefix("10.3.0.0/24")},
		{Name: pattern(t, "*.example.com"), Kind: audit.KindConn, Limit: 10},
		{Unlinked: true},
		{Since: t0.Add(time.Second), Until: t0.Add(3 * time.Second)},
	}
	for r := range 4 {
		readers.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				f := filters[(r+i)%len(filters)]
				got := s.Query(f)
				if !slices.IsSortedFunc(got, func(a, b audit.Record) int { return int(a.Seq) - int(b.Seq) }) {
					t.Errorf("filter %+v: result not in seq order", f)
					return
				}
				if len(got) > max+1 || (f.Limit > 0 && len(got) > f.Limit) {
					t.Errorf("filter %+v: %d records", f, len(got))
					return
				}
				for j := range got {
					if !f.Match(&got[j]) {
						t.Errorf("filter %+v: seq %d does not match", f, got[j].Seq)
						return
					}
				}
				s.Get(uint64(i%(writers*perWriter) + 1))
				s.Stats()
				s.Oldest()
			}
		})
	}
	readers.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
				s.Evict()
			}
		}
	})
	wg.Wait()
	close(stop)
	readers.Wait()

	all := s.Query(audit.Filter{})
	st := s.Stats()
	if len(all) != max || st.Records() != max {
		t.Errorf("held %d records, stats say %d, bound %d", len(all), st.Records(), max)
	}
	checkTables(t, s)
	if st.Evicted != writers*perWriter-max {
		t.Errorf("stats %+v, want evicted %d", st, writers*perWriter-max)
	}
}
