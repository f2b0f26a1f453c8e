package store

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lnm-project/lnm/audit"
)

func TestNewConfig(t *testing.T) {
	s := newStore(t, Config{})
	if s.maxRecords != DefaultMaxRecords || s.maxAge != DefaultMaxAge ||
		s.window != DefaultLinkWindow || s.every != DefaultEvictEvery || s.queueMax != DefaultQueue || s.now == nil {
		t.Errorf("zero config did not take the defaults: %+v", s)
	}
	bad := []struct {
		name string
		cfg  Config
		want string
	}{
		{"max records", Config{MaxRecords: -1}, "store: max records -1 is negative"},
		{"max bytes", Config{MaxBytes: -1}, "store: max bytes -1 is negative"},
		{"max age", Config{MaxAge: -time.Second}, "store: max age -1s is negative"},
		{"link window", Config{LinkWindow: -time.Second}, "store: link window -1s is negative"},
		{"evict every", Config{EvictEvery: -time.Second}, "store: evict period -1s is negative"},
		{"queue", Config{Queue: -1}, "store: queue -1 is negative"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg)
			if err == nil || err.Error() != tt.want {
				t.Errorf("got %v, want %q", err, tt.want)
			}
		})
	}
}

// mixed returns n records of all three tables in turn, one second apart from t0.
func mixed(n int) []audit.Record {
	var rs []audit.Record
	for i := range n {
		seq := uint64(i + 1)
		off := time.Duration(i) * time.Second
		switch i % 3 {
		case 0:
			rs = append(rs, dnsAt(seq, off, "10.3.0.7", "www.example.com", audit.VerdictAllow))
		case 1:
			rs = append(rs, connAt(seq, off, "10.3.0.7:4000", "www.example.com", "parent"))
		default:
			rs = append(rs, audit.Record{Seq: seq, Time: t0.Add(off), Kind: audit.KindConfig, Change: "reload", Hash: "abc"})
		}
	}
	return rs
}

func heldSeqs(s *Store) []uint64 { return seqs(s.Query(audit.Filter{})) }

func TestCountBound(t *testing.T) {
	s := newStore(t, Config{MaxRecords: 5, Now: newClock().Now})
	for i, r := range mixed(8) {
		s.Insert(r)
		if n := s.Stats().Records(); n > 5 {
			t.Fatalf("after insert %d: %d records held, bound is 5", i, n)
		}
	}
	if got, want := heldSeqs(s), []uint64{4, 5, 6, 7, 8}; !slices.Equal(got, want) {
		t.Errorf("held %v, want the newest %v", got, want)
	}
	st := s.Stats()
	if st.DNS != 2 || st.Conn != 2 || st.Event != 1 || st.Evicted != 3 {
		t.Errorf("stats %+v, want dns 2 conn 2 event 1 evicted 3", st)
	}
	if got, want := s.Oldest(), t0.Add(3*time.Second); !got.Equal(want) {
		t.Errorf("oldest %v, want %v", got, want)
	}
}

// "Oldest" is by record time, not seq: a record that arrives late with an early time goes
// first, so Oldest keeps its promise that older records have gone.
func TestCountBoundEvictsByTime(t *testing.T) {
	s := newStore(t, Config{MaxRecords: 2})
	s.Insert(dnsAt(1, 10*time.Second, "10.3.0.7", "a.example.com", audit.VerdictAllow))
	s.Insert(connAt(2, 0, "10.3.0.7:4000", "a.example.com", "parent"))
	s.Insert(dnsAt(3, 20*time.Second, "10.3.0.7", "b.example.com", audit.VerdictAllow))
	if got, want := heldSeqs(s), []uint64{1, 3}; !slices.Equal(got, want) {
		t.Errorf("held %v, want %v", got, want)
	}
}

func TestAgeBound(t *testing.T) {
	clk := newClock()
	s := newStore(t, Config{MaxAge: time.Hour, Now: clk.Now})
	s.Insert(dnsAt(1, -2*time.Hour, "10.3.0.7", "a.example.com", audit.VerdictAllow))
	s.Insert(connAt(2, -90*time.Minute, "10.3.0.7:4000", "a.example.com", "parent"))
	s.Insert(dnsAt(3, -30*time.Minute, "10.3.0.7", "b.example.com", audit.VerdictAllow))
	s.Insert(connAt(4, 0, "10.3.0.7:4001", "b.example.com", "parent"))
	before := s.Stats().Bytes

	s.Evict()
	if got, want := heldSeqs(s), []uint64{3, 4}; !slices.Equal(got, want) {
		t.Errorf("held %v, want %v", got, want)
	}
	st := s.Stats()
	if st.DNS != 1 || st.Conn != 1 || st.Evicted != 2 || st.Bytes >= before || st.Bytes <= 0 {
		t.Errorf("stats %+v (bytes before %d)", st, before)
	}
	if got, want := s.Oldest(), t0.Add(-30*time.Minute); !got.Equal(want) {
		t.Errorf("oldest %v, want %v", got, want)
	}

	clk.Advance(45 * time.Minute)
	s.Evict()
	if got, want := heldSeqs(s), []uint64{4}; !slices.Equal(got, want) {
		t.Errorf("after 45m: held %v, want %v", got, want)
	}
	clk.Advance(time.Hour)
	s.Evict()
	if st := s.Stats(); st.Records() != 0 || st.Bytes != 0 || st.Evicted != 4 || !s.Oldest().IsZero() {
		t.Errorf("empty store: stats %+v oldest %v", st, s.Oldest())
	}
}

// Eviction larger than a batch takes several transactions and still finishes in one pass.
func TestEvictManyBatches(t *testing.T) {
	clk := newClock()
	s := newStore(t, Config{MaxAge: time.Hour, Now: clk.Now})
	const n = 3*evictBatch + 7
	for i := range n {
		s.Insert(dnsAt(uint64(i+1), time.Duration(i)*time.Millisecond, "10.3.0.7", "a.example.com", audit.VerdictAllow))
	}
	s.Insert(dnsAt(n+1, 2*time.Hour, "10.3.0.7", "a.example.com", audit.VerdictAllow))
	clk.Advance(2 * time.Hour)
	s.Evict()
	if got := heldSeqs(s); !slices.Equal(got, []uint64{n + 1}) {
		t.Errorf("held %d records, want only the newest", len(got))
	}
	if st := s.Stats(); st.Evicted != n {
		t.Errorf("evicted %d, want %d", st.Evicted, n)
	}
}

// A lowered count bound (or inserts racing the ticker) is caught up by Evict.
func TestEvictCount(t *testing.T) {
	s := newStore(t, Config{MaxRecords: 10, Now: newClock().Now})
	for _, r := range mixed(10) {
		s.Insert(r)
	}
	s.maxRecords = 4
	s.Evict()
	if got, want := heldSeqs(s), []uint64{7, 8, 9, 10}; !slices.Equal(got, want) {
		t.Errorf("held %v, want %v", got, want)
	}
}

// The memory bound evicts oldest first as the count bound does, on insert and in Evict, and
// keeps the estimate at or under it.
func TestEvictBytes(t *testing.T) {
	recs := mixed(40)
	probe := newStore(t, Config{Now: newClock().Now})
	for _, r := range recs {
		probe.Insert(r)
	}
	all := probe.Stats().Bytes
	s := newStore(t, Config{MaxBytes: all / 2, Now: newClock().Now})
	for _, r := range recs {
		s.Insert(r)
	}
	st := s.Stats()
	if st.Bytes > all/2 || st.Records() >= len(recs) || st.Records() == 0 {
		t.Fatalf("bound %d bytes: hold %d records in %d bytes (all %d take %d)", all/2, st.Records(), st.Bytes, len(recs), all)
	}
	held := heldSeqs(s)
	if held[len(held)-1] != uint64(len(recs)) || held[0] == 1 {
		t.Errorf("held %v: want the newest records, the oldest evicted", held)
	}
	s.maxBytes = all / 4 // lowered: Evict catches up
	s.Evict()
	if st := s.Stats(); st.Bytes > all/4 || st.Records() == 0 {
		t.Errorf("after Evict with bound %d: %d records in %d bytes", all/4, st.Records(), st.Bytes)
	}
}

func TestRunEvictsUntilCancelled(t *testing.T) {
	clk := newClock()
	s := newStore(t, Config{MaxAge: time.Minute, EvictEvery: time.Millisecond, Now: clk.Now})
	s.Insert(dnsAt(1, 0, "10.3.0.7", "a.example.com", audit.VerdictAllow))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	clk.Advance(2 * time.Minute)
	deadline := time.Now().Add(5 * time.Second)
	for s.Stats().Records() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("Run did not evict an expired record")
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

func TestInsertAndGet(t *testing.T) {
	s := newStore(t, Config{})
	r := dnsAt(7, 0, "10.3.0.7", "a.example.com", audit.VerdictAllow)
	s.Insert(r)
	got, ok := s.Get(7)
	if !ok || got.Seq != 7 || got.Name != "a.example.com" || !got.Time.Equal(r.Time) {
		t.Errorf("Get(7) = %+v, %v", got, ok)
	}
	if _, ok := s.Get(8); ok {
		t.Error("Get(8) found a record that was never inserted")
	}

	// The same seq again replaces the record and is counted once.
	r.Name = "b.example.com"
	s.Insert(r)
	if got, _ := s.Get(7); got.Name != "b.example.com" || s.Stats().DNS != 1 {
		t.Errorf("re-insert: %q, stats %+v", got.Name, s.Stats())
	}
	if n := len(s.Query(audit.Filter{Name: pattern(t, "a.example.com")})); n != 0 {
		t.Errorf("the replaced record's name still finds %d records", n)
	}

	// Without a seq a record cannot be held.
	s.Insert(audit.Record{Kind: audit.KindDNS})
	if st := s.Stats(); st.Dropped != 1 || st.Records() != 1 {
		t.Errorf("seq 0: stats %+v", st)
	}
}

// A record Query returns may be appended to by its caller without touching the held one.
func TestQueryResultsDoNotAlias(t *testing.T) {
	s := newStore(t, Config{})
	c := connAt(1, 0, "10.3.0.7:4000", "a.example.com", "parent")
	c.Flags = make([]string, 1, 8)
	c.Flags[0] = audit.FlagUnlinked
	s.Insert(c)
	got := s.Query(audit.Filter{})
	a := append(got[0].Flags, "x")
	b := append(got[0].Flags, "y")
	if a[1] != "x" || b[1] != "y" {
		t.Errorf("appends to a result share an array: %v %v", a, b)
	}
	if held, _ := s.Get(1); len(held.Flags) != 1 {
		t.Errorf("held flags changed: %v", held.Flags)
	}
}

func TestStatsBytesGrowWithNames(t *testing.T) {
	s := newStore(t, Config{})
	s.Insert(dnsAt(1, 0, "10.3.0.7", "a.example.com", audit.VerdictAllow))
	small := s.Stats().Bytes
	s2 := newStore(t, Config{})
	s2.Insert(dnsAt(1, 0, "10.3.0.7", strings.Repeat("a", 60)+".example.com", audit.VerdictAllow))
	if big := s2.Stats().Bytes; big <= small || small <= 0 {
		t.Errorf("bytes: short name %d, long name %d", small, big)
	}
}

// Add only queues: nothing is inserted until Flush (or a reader, which flushes first), and a
// full queue drops and counts rather than waits.
func TestAddQueuesAndFlushInserts(t *testing.T) {
	s := newStore(t, Config{Queue: 2})
	for _, r := range mixed(3) {
		add(s, r)
	}
	if st := s.Stats(); st.Records() != 0 || st.Queued != 2 || st.Dropped != 1 {
		t.Errorf("before Flush: stats %+v, want 0 held, 2 queued, 1 dropped", st)
	}
	s.Flush()
	if st := s.Stats(); st.Records() != 2 || st.Queued != 0 || st.Dropped != 1 {
		t.Errorf("after Flush: stats %+v, want 2 held, none queued, 1 dropped", st)
	}
	add(s, mixed(4)[3])
	if got, want := heldSeqs(s), []uint64{1, 2, 4}; !slices.Equal(got, want) {
		t.Errorf("Query after Add sees %v, want %v", got, want)
	}
}

// Run inserts what is added without anyone flushing, and what is still queued when it is
// cancelled.
func TestRunInsertsAdded(t *testing.T) {
	const n = 3 * insertBatch
	s := newStore(t, Config{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	for _, r := range mixed(n) {
		add(s, r)
	}
	deadline := time.Now().Add(5 * time.Second)
	for s.Stats().Records() != n {
		if time.Now().After(deadline) {
			t.Fatalf("Run did not insert the added records: %+v", s.Stats())
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	<-done
	// Added after Run stopped: queued until a reader asks.
	add(s, dnsAt(n+1, 0, "10.3.0.7", "a.example.com", audit.VerdictAllow))
	if _, ok := s.Get(n + 1); !ok {
		t.Error("Get did not see a record added after Run returned")
	}
	// Records queued when the context ends are inserted before Run returns.
	s2 := newStore(t, Config{})
	for _, r := range mixed(10) {
		add(s2, r)
	}
	ctx2, cancel2 := context.WithCancel(context.Background())
	cancel2()
	s2.Run(ctx2)
	if st := s2.Stats(); st.Records() != 10 || st.Queued != 0 {
		t.Errorf("after Run on a cancelled context: %+v", st)
	}
}

// Writers add while readers query and Flush: every record added before a Query returns
// is in its answer.
func TestReadYourWrites(t *testing.T) {
	s := newStore(t, Config{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.Run(ctx)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 200 {
				seq := uint64(w*1000 + i + 1)
				add(s, dnsAt(seq, time.Duration(seq)*time.Millisecond, "10.3.0.7", "a.example.com", audit.VerdictAllow))
				if _, ok := s.Get(seq); !ok {
					t.Errorf("seq %d added and not found", seq)
					return
				}
			}
		})
	}
	wg.Wait()
}

func TestMemoryLimit(t *testing.T) {
	for _, tc := range []struct {
		bound, want int64
	}{
		{0, DefaultMaxBytes + RuntimeOverhead},
		{64 << 20, 64<<20 + RuntimeOverhead},
		{4 << 30, 4<<30 + RuntimeOverhead},
	} {
		if got := MemoryLimit(tc.bound); got != tc.want {
			t.Errorf("MemoryLimit(%d) = %d, want %d", tc.bound, got, tc.want)
		}
	}
}
