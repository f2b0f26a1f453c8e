package audit

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/lnm-project/lnm/allowlist"
)

// writeLog writes n mixed records one second apart from base into small segments.
func writeLog(t *testing.T, n int, base time.Time) string {
	t.Helper()
	dir := t.TempDir()
	l := mustOpen(t, Config{Dir: dir, SegmentSize: 4096})
	for i := range n {
		mustAppend(t, l, mixed(i, base.Add(time.Duration(i)*time.Second)))
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

func seqsOf(recs []Record) []uint64 {
	out := make([]uint64, len(recs))
	for i, r := range recs {
		out[i] = r.Seq
	}
	return out
}

func TestReadFilters(t *testing.T) {
	base := time.Date(2026, 11, 28, 7, 0, 0, 0, time.UTC)
	const n = 600
	dir := writeLog(t, n, base)
	pat, _ := allowlist.ParsePattern("host3.azure.test")
	at := func(i int) time.Time { return base.Add(time.Duration(i) * time.Second) }
	// seq = i+1; record i is at base+i s.
	for _, tc := range []struct {
		name  string
		f     Filter
		limit int
		want  func(seq uint64, r *Record) bool
	}{
		{"all", Filter{}, 0, func(uint64, *Record) bool { return true }},
		{"since", Filter{Since: at(450)}, 0, func(s uint64, _ *Record) bool { return s > 450 }},
		{"until", Filter{Until: at(100)}, 0, func(s uint64, _ *Record) bool { return s <= 100 }},
		{"window", Filter{Since: at(200), Until: at(210)}, 0, func(s uint64, _ *Record) bool { return s > 200 && s <= 210 }},
		{"empty window", Filter{Since: at(n + 10)}, 0, func(uint64, *Record) bool { return false }},
		{"kind", Filter{Kind: KindConfig}, 0, func(_ uint64, r *Record) bool { return r.Kind == KindConfig }},
		{"deny", Filter{Verdict: VerdictDeny}, 0, func(_ uint64, r *Record) bool { return r.Verdict == VerdictDeny }},
		{"client and name", Filter{Client: netip.MustParsePrefix("198.18.3.22/32"), Name: &pat}, 0,
			func(_ uint64, r *Record) bool {
				return r.Client.Addr() == netip.MustParseAddr("198.18.3.22") &&
					(r.Name == "host3.azure.test" || (r.Kind == KindConn && r.SNI == "host3.azure.test"))
			}},
		{"device", Filter{Device: "plc-20"}, 0, func(_ uint64, r *Record) bool { return r.Device == "plc-20" }},
		{"device, newest 5", Filter{Device: "plc-20", Verdict: VerdictDeny}, 5, nil},
		{"newest 7", Filter{}, 7, func(s uint64, _ *Record) bool { return s > n-7 }},
		{"newest 25 dns", Filter{Kind: KindDNS}, 25, nil},
		{"limit from filter", Filter{Kind: KindConn, Limit: 3}, 0, nil},
		{"limit above matches", Filter{Kind: KindConfig, Until: at(60)}, 1000, func(s uint64, r *Record) bool {
			return r.Kind == KindConfig && s <= 60
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Expected: filter every record by hand.
			var all, want []Record
			all = readAll(t, dir)
			for i := range all {
				if tc.f.Match(&all[i]) {
					want = append(want, all[i])
				}
			}
			if tc.want != nil {
				var check []Record
				for i := range all {
					if tc.want(all[i].Seq, &all[i]) {
						check = append(check, all[i])
					}
				}
				if tc.limit == 0 && tc.f.Limit == 0 && !equalSeqs(seqsOf(check), seqsOf(want)) {
					t.Fatalf("the case's expectation disagrees with Match: %v vs %v", seqsOf(check), seqsOf(want))
				}
			}
			limit := tc.limit
			if limit == 0 {
				limit = tc.f.Limit
			}
			if limit > 0 && len(want) > limit {
				want = want[len(want)-limit:]
			}

			if tc.limit == 0 && tc.f.Limit == 0 {
				var got []Record
				if err := Read(dir, tc.f, func(r *Record) bool { got = append(got, *r); return true }); err != nil {
					t.Fatal(err)
				}
				if !equalSeqs(seqsOf(got), seqsOf(want)) {
					t.Fatalf("Read: %v\nwant %v", seqsOf(got), seqsOf(want))
				}
			}
			got, err := ReadNewest(dir, tc.f, tc.limit)
			if err != nil {
				t.Fatal(err)
			}
			if !equalSeqs(seqsOf(got), seqsOf(want)) {
				t.Fatalf("ReadNewest: %v\nwant %v", seqsOf(got), seqsOf(want))
			}
		})
	}

	t.Run("stop early", func(t *testing.T) {
		count := 0
		if err := Read(dir, Filter{}, func(*Record) bool { count++; return count < 10 }); err != nil {
			t.Fatal(err)
		}
		if count != 10 {
			t.Fatalf("fn called %d times after returning false at 10", count)
		}
	})
}

func equalSeqs(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestReadSkipsSegmentsByName plants, in a sealed segment whose name says its records are
// older, a record inside the queried window: only a reader that opened the file would see it.
func TestReadSkipsSegmentsByName(t *testing.T) {
	base := time.Date(2026, 11, 28, 7, 0, 0, 0, time.UTC)
	dir := writeLog(t, 300, base)
	segs, err := listSegments(dir)
	if err != nil || len(segs) < 3 || !segs[0].sealed {
		t.Fatalf("segments %v, %v", segs, err)
	}
	planted := mixed(0, base.Add(time.Hour))
	planted.Seq = segs[0].first
	path := filepath.Join(dir, segs[0].name)
	if err := os.WriteFile(path, append(planted.AppendJSON(nil), '\n'), 0o640); err != nil {
		t.Fatal(err)
	}
	for _, f := range []Filter{{Since: base.Add(30 * time.Minute)}, {Since: base.Add(30 * time.Minute), Kind: KindDNS}} {
		var got []Record
		if err := Read(dir, f, func(r *Record) bool { got = append(got, *r); return true }); err != nil {
			t.Fatal(err)
		}
		newest, err := ReadNewest(dir, f, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 0 || len(newest) != 0 {
			t.Fatalf("a segment outside the window was opened: Read %v, ReadNewest %v", seqsOf(got), seqsOf(newest))
		}
	}
	// Without a time filter it is read.
	if recs := readAll(t, dir); recs[0].Time != planted.Time.Truncate(time.Millisecond) {
		t.Fatalf("the planted record was not read without a window: %v", recs[0])
	}
}

func TestReadCorrupt(t *testing.T) {
	base := time.Date(2026, 11, 28, 7, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name    string
		edit    func([]byte) []byte
		want    int // records read
		corrupt bool
	}{
		{"torn last line", func(b []byte) []byte { return b[:len(b)-7] }, 9, false},
		{"unparsable last line", func(b []byte) []byte { return append(b, "{\"seq\":11,\"ti\n"...) }, 10, false},
		{"garbage in the middle", func(b []byte) []byte {
			return append([]byte("{\"seq\":1,\"time\":\"x\"}\n\x00\x00\n"), b...)
		}, 10, true},
		{"empty file", func([]byte) []byte { return nil }, 0, false},
		{"long line", func(b []byte) []byte {
			long := make([]byte, 1<<20)
			for i := range long {
				long[i] = 'x'
			}
			return append(append(b, long...), '\n')
		}, 10, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			l := mustOpen(t, Config{Dir: dir})
			for i := range 10 {
				mustAppend(t, l, mixed(i, base.Add(time.Duration(i)*time.Second)))
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, activeName(1))
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, tc.edit(data), 0o640); err != nil {
				t.Fatal(err)
			}
			var got []Record
			err = Read(dir, Filter{}, func(r *Record) bool { got = append(got, *r); return true })
			if tc.corrupt != errors.Is(err, ErrCorrupt) || (!tc.corrupt && err != nil) {
				t.Fatalf("Read error %v", err)
			}
			if len(got) != tc.want {
				t.Fatalf("read %d records, want %d", len(got), tc.want)
			}
			newest, err := ReadNewest(dir, Filter{}, 3)
			if tc.corrupt != errors.Is(err, ErrCorrupt) || len(newest) != min(3, tc.want) {
				t.Fatalf("ReadNewest: %d records, %v", len(newest), err)
			}
		})
	}
}

func TestReadMissingDir(t *testing.T) {
	if err := Read(filepath.Join(t.TempDir(), "none"), Filter{}, func(*Record) bool { return true }); err == nil {
		t.Fatal("Read of a missing directory succeeded")
	}
}
