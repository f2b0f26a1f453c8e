package audit

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/lnm-project/lnm/allowlist"
	"github.com/lnm-project/lnm/internal/testkit"
)

// Benchmark logs are generated once per process, only when a benchmark asks for them, and
// removed by TestMain.
var (
	benchMu   sync.Mutex
	benchDirs = map[int]string{}
)

// TestMain also fails the package when any test leaves a goroutine running.
func TestMain(m *testing.M) {
	testkit.Main(m, func() {
		for _, dir := range benchDirs {
			os.RemoveAll(dir)
		}
	})
}

// benchBase is the time of the first record of a generated log; record i is 10ms later.
var benchBase = time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC)

// benchLog returns a directory holding n mixed records in 8 MiB segments.
func benchLog(b *testing.B, n int) string {
	benchMu.Lock()
	defer benchMu.Unlock()
	if dir, ok := benchDirs[n]; ok {
		return dir
	}
	dir, err := os.MkdirTemp("", fmt.Sprintf("lnm-audit-bench-%d-", n))
	if err != nil {
		b.Fatal(err)
	}
	benchDirs[n] = dir
	l, err := Open(Config{Dir: dir, SegmentSize: 8 << 20, QueueSize: 100_000})
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	for i := range n {
		appendRetry(b, l, mixed(i, benchBase.Add(time.Duration(i)*10*time.Millisecond)))
	}
	if err := l.Close(); err != nil {
		b.Fatal(err)
	}
	b.Logf("generated %d records in %v", n, time.Since(start).Round(time.Millisecond))
	return dir
}

// appendRetry appends, waiting for room while the queue is full: a producer held to the speed
// of the disk.
func appendRetry(b *testing.B, l *Log, r *Record) {
	for {
		err := l.Append(r)
		if err == nil {
			return
		}
		if !errors.Is(err, ErrQueueFull) {
			b.Fatal(err)
		}
		runtime.Gosched()
	}
}

// BenchmarkAppend measures records per second sustained through to disk: b.N appends, then a
// Sync. Allowed records are group-committed every SyncEvery; the mixed set holds denials and
// config changes, which are fsynced as soon as they are written.
func BenchmarkAppend(b *testing.B) {
	for _, bc := range []struct {
		name  string
		kinds []int // indexes into mixed's cycle
	}{
		{"allowed", []int{0, 2, 3}},
		{"mixed with urgent", []int{0, 1, 2, 3, 4, 5}},
	} {
		b.Run(bc.name, func(b *testing.B) { benchAppend(b, Config{}, bc.kinds) })
	}
}

// BenchmarkAppendSyncAlways is BenchmarkAppend with `fsync always`.
func BenchmarkAppendSyncAlways(b *testing.B) {
	benchAppend(b, Config{SyncAlways: true}, []int{0, 2, 3})
}

func benchAppend(b *testing.B, cfg Config, kinds []int) {
	cfg.Dir = b.TempDir()
	l, err := Open(cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	tmpl := make([]Record, len(kinds))
	for i, k := range kinds {
		tmpl[i] = *mixed(k, time.Time{})
	}
	b.ReportAllocs()
	start := time.Now()
	n := 0
	for b.Loop() {
		r := new(Record)
		*r = tmpl[n%len(tmpl)]
		appendRetry(b, l, r)
		n++
	}
	if err := l.Sync(); err != nil {
		b.Fatal(err)
	}
	el := time.Since(start)
	b.ReportMetric(float64(n)/el.Seconds(), "records/s")
	s := l.Stats()
	b.ReportMetric(float64(s.Bytes)/float64(n), "B/record")
}

// BenchmarkRead measures records per second decoded from 100,000 records on disk.
func BenchmarkRead(b *testing.B) {
	dir := benchLog(b, 100_000)
	b.ReportAllocs()
	start := time.Now()
	total := 0
	for b.Loop() {
		n := 0
		if err := Read(dir, Filter{}, func(*Record) bool { n++; return true }); err != nil {
			b.Fatal(err)
		}
		if n != 100_000 {
			b.Fatalf("read %d records", n)
		}
		total += n
	}
	b.ReportMetric(float64(total)/time.Since(start).Seconds(), "records/s")
}

// BenchmarkReadNewestFiltered is `lnm audit query --limit` over 1,000,000 records on disk.
// BenchmarkReadNewestFiltered reads a log of 1,000,000 records, or LNM_BENCH_RECORDS of
// them (the 10,000,000-on-disk figure: LNM_BENCH_RECORDS=10000000, ~2.5 GB in $TMPDIR).
func BenchmarkReadNewestFiltered(b *testing.B) {
	n := 1_000_000
	if s := os.Getenv("LNM_BENCH_RECORDS"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 400_000 {
			b.Fatalf("LNM_BENCH_RECORDS=%q: want a number of at least 400000", s)
		}
		n = v
	}
	dir := benchLog(b, n)
	pat, _ := allowlist.ParsePattern("host3.azure.test")
	at := func(i int) time.Time { return benchBase.Add(time.Duration(i) * 10 * time.Millisecond) }
	for _, bc := range []struct {
		name  string
		f     Filter
		limit int
	}{
		{"name, newest 100", Filter{Name: &pat, Kind: KindDNS}, 100},
		{"one minute an hour ago, newest 100", Filter{Since: at(n - 360_000), Until: at(n - 354_000)}, 100},
		{"no match, whole log", Filter{Verdict: VerdictWouldDeny}, 100},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				recs, err := ReadNewest(dir, bc.f, bc.limit)
				if err != nil {
					b.Fatal(err)
				}
				if bc.f.Verdict == "" && len(recs) != bc.limit {
					b.Fatalf("%d records", len(recs))
				}
			}
		})
	}
}
