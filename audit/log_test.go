package audit

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lnm-project/lnm/allowlist"
	"github.com/lnm-project/lnm/internal/testkit"
)

// mixed returns the i-th record of a mix of every kind, timed at t (zero: Append's clock).
func mixed(i int, t time.Time) *Record {
	uid := 1000 + i%3
	client := netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, 3, byte(20 + i%5)}), uint16(40000+i%1000))
	name := fmt.Sprintf("host%d.azure.test", i%7)
	switch i % 6 {
	case 0, 1:
		r := &Record{Time: t, Box: "l3", Level: 3, Kind: KindDNS, Client: netip.AddrPortFrom(client.Addr(), 0),
			Name: name, QType: "A", Verdict: VerdictAllow, Rule: "*.azure.test (lnm.conf:12)", Rcode: "NOERROR",
			Answer: []netip.Addr{netip.MustParseAddr("198.18.3.1")}}
		if i%6 == 1 {
			r.Name, r.Verdict, r.Rule, r.Rcode, r.Answer = "evil.test", VerdictDeny, "", "NXDOMAIN", nil
		}
		if i%5 == 0 { // 198.18.3.20 holds a DHCP lease
			r.Device, r.MAC = "plc-20", "00:1b:1b:aa:bb:20"
		}
		return r
	case 2:
		return &Record{Time: t, Box: "l3", Level: 3, Kind: KindConn, Event: EventOpen, ID: uint64(i), Client: client,
			Port: 443, SNI: name, ALPN: []string{"h2", "http/1.1"}, Verdict: VerdictAllow,
			Upstream: netip.MustParseAddrPort("198.18.4.1:443"), Via: "parent", QuerySeq: uint64(i)}
	case 3:
		return &Record{Time: t, Box: "l3", Level: 3, Kind: KindConn, Event: EventClose, ID: uint64(i), Client: client,
			Port: 443, SNI: name, Verdict: VerdictAllow, Reason: "eof", Via: "parent",
			Flags: []string{FlagUnlinked}, BytesUp: int64(i * 10), BytesDown: int64(i * 1000), DurationMS: int64(i)}
	case 4:
		return &Record{Time: t, Box: "l3", Level: 3, Kind: KindConfig, Change: "reload", Hash: "ab12cd", UID: &uid}
	default:
		return &Record{Time: t, Box: "l3", Level: 3, Kind: KindSummary, Reason: "dns_rate_limited",
			Client: netip.AddrPortFrom(client.Addr(), 0), Count: uint64(i)}
	}
}

// readAll reads every record in dir and fails on any error.
func readAll(t testing.TB, dir string) []Record {
	t.Helper()
	var out []Record
	if err := Read(dir, Filter{}, func(r *Record) bool { out = append(out, *r); return true }); err != nil {
		t.Fatalf("Read: %v", err)
	}
	return out
}

// checkSeqs fails unless recs carry the seqs first, first+1, ….
func checkSeqs(t testing.TB, recs []Record, first uint64) {
	t.Helper()
	for i, r := range recs {
		if r.Seq != first+uint64(i) {
			t.Fatalf("record %d has seq %d, want %d", i, r.Seq, first+uint64(i))
		}
	}
}

func mustOpen(t testing.TB, cfg Config) *Log {
	t.Helper()
	l, err := Open(cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func mustAppend(t testing.TB, l *Log, r *Record) {
	t.Helper()
	if err := l.Append(r); err != nil {
		t.Fatalf("Append: %v", err)
	}
}

// TestWritesInBatches checks that the writer keeps writing in batches while records it has
// written wait for their fsync: a burst of records within one fsync window costs a few
// write(2) calls, not one each (the writer once counted written records as pending and,
// past a few hundred, wrote them one by one).
func TestWritesInBatches(t *testing.T) {
	const n = 10_000
	l := mustOpen(t, Config{
		Dir:       filepath.Join(t.TempDir(), "audit"),
		SyncEvery: time.Hour, // nothing is fsynced, and so let go of, during the burst
		QueueSize: n,
		Urgent:    func(*Record) bool { return false },
	})
	defer l.Close()
	for i := range n {
		mustAppend(t, l, mixed(i, time.Time{}))
	}
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	st := l.Stats()
	if st.Records != n {
		t.Fatalf("%d records written, want %d", st.Records, n)
	}
	if st.Writes > n/50 {
		t.Errorf("%d records took %d writes; want at most %d (batches of 50 or more)", n, st.Writes, n/50)
	}
	t.Logf("%d records in %d writes", n, st.Writes)
}

func TestRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		n, m int
	}{
		{"defaults", Config{}, 500, 100},
		{"sync always", Config{SyncAlways: true}, 200, 50},
		{"small segments", Config{SegmentSize: 2048}, 300, 300},
		{"one record per segment", Config{SegmentSize: 1}, 20, 5},
		{"empty first run", Config{}, 0, 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			cfg.Dir = filepath.Join(t.TempDir(), "audit")
			before := testkit.Goroutines()
			l := mustOpen(t, cfg)
			var want [][]byte
			for i := range tc.n {
				r := mixed(i, time.Time{})
				mustAppend(t, l, r)
				want = append(want, r.AppendJSON(nil))
			}
			if got := l.LastSeq(); got != uint64(tc.n) {
				t.Fatalf("LastSeq = %d, want %d", got, tc.n)
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			if err := l.Close(); err != nil {
				t.Fatalf("second Close: %v", err)
			}
			if err := l.Append(mixed(0, time.Time{})); !errors.Is(err, ErrClosed) {
				t.Fatalf("Append after Close = %v, want ErrClosed", err)
			}
			before.NoneNew(t)
			got := readAll(t, cfg.Dir)
			if len(got) != tc.n {
				t.Fatalf("read %d records, want %d", len(got), tc.n)
			}
			checkSeqs(t, got, 1)
			for i := range got {
				if b := got[i].AppendJSON(nil); !bytes.Equal(b, want[i]) {
					t.Fatalf("record %d:\n got %s\nwant %s", i, b, want[i])
				}
			}

			l = mustOpen(t, cfg)
			if got := l.LastSeq(); got != uint64(tc.n) {
				t.Fatalf("after reopen LastSeq = %d, want %d", got, tc.n)
			}
			for i := range tc.m {
				r := mixed(i, time.Time{})
				mustAppend(t, l, r)
				if r.Seq != uint64(tc.n+i+1) {
					t.Fatalf("after reopen Append gave seq %d, want %d", r.Seq, tc.n+i+1)
				}
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			all := readAll(t, cfg.Dir)
			if len(all) != tc.n+tc.m {
				t.Fatalf("read %d records, want %d", len(all), tc.n+tc.m)
			}
			checkSeqs(t, all, 1)
		})
	}
}

// segmentSeqs reads each segment file on its own and returns its seqs, checking that a sealed
// name's time range holds its records.
func segmentSeqs(t *testing.T, dir string) (names []string, seqs [][]uint64) {
	t.Helper()
	segs, err := listSegments(dir)
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range segs {
		if !s.sealed && i != len(segs)-1 {
			t.Errorf("segment %s is not sealed but not the last", s.name)
		}
		data, err := os.ReadFile(filepath.Join(dir, s.name))
		if err != nil {
			t.Fatal(err)
		}
		var ss []uint64
		for _, line := range bytes.Split(bytes.TrimSuffix(data, []byte("\n")), []byte("\n")) {
			if len(line) == 0 {
				continue
			}
			var r Record
			if err := r.UnmarshalJSON(line); err != nil {
				t.Fatalf("%s: %v: %s", s.name, err, line)
			}
			if s.sealed && (r.Time.Before(s.minT) || r.Time.After(s.maxT)) {
				t.Errorf("%s holds seq %d at %v outside its name's range", s.name, r.Seq, r.Time)
			}
			ss = append(ss, r.Seq)
		}
		if len(ss) > 0 && ss[0] != s.first {
			t.Errorf("%s starts with seq %d", s.name, ss[0])
		}
		names = append(names, s.name)
		seqs = append(seqs, ss)
	}
	return names, seqs
}

func TestRotationConcurrent(t *testing.T) {
	for _, tc := range []struct {
		name    string
		segSize int64
		writers int
		each    int
	}{
		{"8 writers, 4 KiB segments", 4096, 8, 500},
		{"8 writers, 600 B segments", 600, 8, 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			l := mustOpen(t, Config{Dir: dir, SegmentSize: tc.segSize, SyncEvery: 5 * time.Millisecond})
			var wg sync.WaitGroup
			errs := make(chan error, tc.writers)
			for w := range tc.writers {
				wg.Go(func() {
					for i := range tc.each {
						for {
							err := l.Append(mixed(w*tc.each+i, time.Time{}))
							if err == nil {
								break
							}
							if !errors.Is(err, ErrQueueFull) {
								errs <- err
								return
							}
							time.Sleep(time.Millisecond)
						}
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			names, seqs := segmentSeqs(t, dir)
			if len(names) < 3 {
				t.Fatalf("only %d segments; rotation did not happen", len(names))
			}
			next := uint64(1)
			for i, ss := range seqs {
				for _, s := range ss {
					if s != next {
						t.Fatalf("%s: seq %d where %d was due", names[i], s, next)
					}
					next++
				}
				if fi, err := os.Stat(filepath.Join(dir, names[i])); err == nil && fi.Size() > tc.segSize && len(ss) > 1 {
					t.Errorf("%s is %d bytes with %d records, over the segment size", names[i], fi.Size(), len(ss))
				}
			}
			if want := uint64(tc.writers*tc.each) + 1; next != want {
				t.Fatalf("read up to seq %d, want %d", next-1, want-1)
			}
		})
	}
}

// copyDir copies the regular files of src into a new temporary directory.
func copyDir(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	ents, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		data, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), data, 0o640); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

func TestTornTail(t *testing.T) {
	const n = 5
	src := t.TempDir()
	l := mustOpen(t, Config{Dir: src})
	for i := range n {
		mustAppend(t, l, mixed(i+2, time.Time{})) // the last is a conn close, the longest kind
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	seg := activeName(1)
	data, err := os.ReadFile(filepath.Join(src, seg))
	if err != nil {
		t.Fatal(err)
	}
	start := bytes.LastIndexByte(data[:len(data)-1], '\n') + 1 // where the last record begins

	check := func(t *testing.T, content []byte) {
		dir := copyDir(t, src)
		path := filepath.Join(dir, seg)
		if err := os.WriteFile(path, content, 0o640); err != nil {
			t.Fatal(err)
		}
		// The reader skips the torn line without an error and without touching the file.
		got := readAll(t, dir)
		if len(got) != n-1 {
			t.Fatalf("Read returned %d records, want %d", len(got), n-1)
		}
		checkSeqs(t, got, 1)
		// Open cuts it and the seq continues after the last full record.
		l, err := Open(Config{Dir: dir})
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		if fi, err := os.Stat(path); err != nil || fi.Size() != int64(start) {
			t.Fatalf("after Open the segment is %v bytes (err %v), want %d", fi.Size(), err, start)
		}
		if got := l.LastSeq(); got != n-1 {
			t.Fatalf("LastSeq = %d, want %d", got, n-1)
		}
		r := mixed(0, time.Time{})
		mustAppend(t, l, r)
		if r.Seq != n {
			t.Fatalf("next seq %d, want %d", r.Seq, n)
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		got = readAll(t, dir)
		checkSeqs(t, got, 1)
		if len(got) != n || got[n-1].Kind != KindDNS {
			t.Fatalf("after append read %d records, last %+v", len(got), got[len(got)-1])
		}
	}

	for off := start + 1; off < len(data); off++ {
		t.Run(fmt.Sprintf("cut at %d", off), func(t *testing.T) { check(t, data[:off]) })
	}
	for _, tc := range []struct {
		name string
		tail string
	}{
		{"zeros after a crash", strings.Repeat("\x00", 4096)},
		{"zeros and a newline", strings.Repeat("\x00", 100) + "\n"},
		{"truncated object with newline", `{"seq":5,"time":"2026-11-28T07:30:00.123Z","box":"l3"` + "\n"},
		{"garbage lines", "not json\n{}\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			check(t, append(bytes.Clone(data[:start]), tc.tail...))
		})
	}
}

func TestRetention(t *testing.T) {
	now := time.Now()
	for _, tc := range []struct {
		name string
		cfg  Config
		// times gives the time of record i of n.
		n     int
		times func(i int) time.Time
		check func(t *testing.T, dir string, recs []Record, st Stats)
	}{
		{
			name: "max total", n: 600,
			cfg:   Config{SegmentSize: 4096, MaxTotal: 16 << 10},
			times: func(int) time.Time { return time.Time{} },
			check: func(t *testing.T, dir string, recs []Record, st Stats) {
				var total int64
				segs, _ := listSegments(dir)
				for _, s := range segs {
					total += s.size
				}
				if total > 16<<10 {
					t.Errorf("%d bytes left in %d segments, want at most %d", total, len(segs), 16<<10)
				}
				if len(recs) == 0 || len(recs) > 300 {
					t.Fatalf("%d records left", len(recs))
				}
				checkSeqs(t, recs, recs[0].Seq)
				if last := recs[len(recs)-1].Seq; last != 600 {
					t.Errorf("newest record left is %d, want 600", last)
				}
				if st.Deleted == 0 || st.Segments != len(segs) {
					t.Errorf("Stats: %d deleted, %d segments; %d on disk", st.Deleted, st.Segments, len(segs))
				}
			},
		},
		{
			name: "max age", n: 400,
			cfg: Config{SegmentSize: 4096, MaxAge: 24 * time.Hour},
			times: func(i int) time.Time {
				if i < 200 {
					return now.Add(-48*time.Hour + time.Duration(i)*time.Second)
				}
				return time.Time{}
			},
			check: func(t *testing.T, dir string, recs []Record, st Stats) {
				old := 0
				for _, r := range recs {
					if r.Time.Before(now.Add(-24 * time.Hour)) {
						old++
					}
				}
				// Only the segment holding the switch from old to new may keep old records,
				// fewer than a segment holds (4096 bytes of records of 150 bytes or more).
				if old > 4096/150 {
					t.Errorf("%d records older than MaxAge left", old)
				}
				if recs[len(recs)-1].Seq != 400 || len(recs) < 200 {
					t.Fatalf("%d records left, newest %d", len(recs), recs[len(recs)-1].Seq)
				}
				checkSeqs(t, recs, recs[0].Seq)
				segs, _ := listSegments(dir)
				for _, s := range segs {
					if s.sealed && s.maxT.Before(now.Add(-24*time.Hour)) {
						t.Errorf("segment %s is past MaxAge and still there", s.name)
					}
				}
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			cfg.Dir = t.TempDir()
			l := mustOpen(t, cfg)
			for i := range tc.n {
				mustAppend(t, l, mixed(i, tc.times(i)))
			}
			if err := l.Sync(); err != nil {
				t.Fatal(err)
			}
			st := l.Stats()
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			tc.check(t, cfg.Dir, readAll(t, cfg.Dir), st)
		})
	}

	t.Run("at open", func(t *testing.T) {
		dir := t.TempDir()
		l := mustOpen(t, Config{Dir: dir, SegmentSize: 1024})
		for i := range 100 {
			mustAppend(t, l, mixed(i, now.Add(-10*24*time.Hour)))
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		before, _ := listSegments(dir)
		l = mustOpen(t, Config{Dir: dir, SegmentSize: 1024, MaxAge: 24 * time.Hour})
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		after, _ := listSegments(dir)
		if len(before) < 5 || len(after) != 1 {
			t.Fatalf("%d segments before reopening with a short MaxAge, %d after; want many, then only the active", len(before), len(after))
		}
		if l2 := mustOpen(t, Config{Dir: dir}); l2.LastSeq() != 100 {
			t.Errorf("after retention LastSeq = %d, want 100", l2.LastSeq())
			l2.Close()
		} else {
			l2.Close()
		}
	})
}

func TestOpenTwice(t *testing.T) {
	dir := t.TempDir()
	l := mustOpen(t, Config{Dir: dir})
	defer l.Close()
	if l2, err := Open(Config{Dir: dir}); err == nil {
		l2.Close()
		t.Fatal("a second Open of the same directory succeeded")
	}
}

func TestOpenErrors(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"no dir", Config{}},
		{"dir is a file", Config{Dir: file}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if l, err := Open(tc.cfg); err == nil {
				l.Close()
				t.Fatal("Open succeeded")
			} else if !strings.HasPrefix(err.Error(), "audit: ") {
				t.Errorf("error %q lacks the package prefix", err)
			}
		})
	}
}

func TestFollow(t *testing.T) {
	dir := t.TempDir()
	l := mustOpen(t, Config{Dir: dir})
	defer l.Close()
	pat, err := allowlist.ParsePattern("*.azure.test")
	if err != nil {
		t.Fatal(err)
	}
	dnsCh, stopDNS := l.Follow(Filter{Kind: KindDNS, Name: &pat})
	defer stopDNS()
	stalled, stopStalled := l.Follow(Filter{})
	defer stopStalled()

	const n = 3 * followBuffer
	done := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(done)
		for i := range n {
			for {
				err := l.Append(mixed(i, time.Time{}))
				if err == nil {
					break
				}
				if !errors.Is(err, ErrQueueFull) {
					t.Errorf("Append: %v", err)
					return
				}
				time.Sleep(time.Millisecond)
			}
		}
	}()

	// The filtered follower sees every allowed dns record (i%6 == 0), in seq order.
	var got []Record
	timeout := time.After(10 * time.Second)
	for len(got) < n/6 {
		select {
		case r, ok := <-dnsCh:
			if !ok {
				t.Fatalf("the reading follower was dropped after %d records", len(got))
			}
			got = append(got, r)
		case <-timeout:
			t.Fatalf("follower got %d records, want %d", len(got), n/6)
		}
	}
	<-done
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("appending took %v with a stalled follower", d)
	}
	for i, r := range got {
		if r.Kind != KindDNS || r.Verdict != VerdictAllow || (i > 0 && r.Seq <= got[i-1].Seq) {
			t.Fatalf("follower record %d: %+v", i, r)
		}
		if want := uint64(6*i + 1); r.Seq != want {
			t.Fatalf("follower record %d has seq %d, want %d", i, r.Seq, want)
		}
	}

	// The stalled follower was dropped: its channel holds at most the buffer, then is closed.
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	count := 0
	for range stalled {
		count++
	}
	if count > followBuffer {
		t.Errorf("stalled follower received %d records, more than its buffer", count)
	}
	if s := l.Stats(); s.FollowsDropped != 1 || s.Followers != 1 {
		t.Errorf("Stats: %d followers, %d dropped; want 1 and 1", s.Followers, s.FollowsDropped)
	}
	stopStalled() // after the drop: harmless

	// Close ends the remaining streams.
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	for range dnsCh {
	}
	if ch, stop := l.Follow(Filter{}); ch != nil {
		if _, ok := <-ch; ok {
			t.Error("Follow after Close gave an open channel")
		}
		stop()
	}
}

func TestParseSegmentName(t *testing.T) {
	t1 := time.Date(2026, 11, 28, 7, 30, 0, 123e6, time.UTC)
	t2 := t1.Add(time.Hour)
	for _, tc := range []struct {
		name   string
		ok     bool
		first  uint64
		sealed bool
	}{
		{activeName(1), true, 1, false},
		{"audit-00000000000000000001.jsonl", true, 1, false},
		{sealedName(42, t1, t2), true, 42, true},
		{"audit-00000000000000000042_20261128T073000.123Z_20261128T083000.123Z.jsonl", true, 42, true},
		{"audit-00000000000000000000.jsonl", false, 0, false},
		{"audit-1.jsonl", false, 0, false},
		{"audit-00000000000000000001.jsonl.tmp", false, 0, false},
		{"audit-00000000000000000001_x_y.jsonl", false, 0, false},
		{"audit-00000000000000000001x20261128T073000.123Z_20261128T083000.123Z.jsonl", false, 0, false},
		{"other.jsonl", false, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, ok := parseSegmentName(tc.name)
			if ok != tc.ok || s.first != tc.first || s.sealed != tc.sealed {
				t.Fatalf("got %+v, %v", s, ok)
			}
			if s.sealed && (!s.minT.Equal(t1) || !s.maxT.Equal(t2)) {
				t.Fatalf("times %v %v", s.minT, s.maxT)
			}
		})
	}
}
