package main

import (
	"math"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseDnsperf(t *testing.T) {
	const out = `DNS Performance Testing Tool
Statistics:

  Queries sent:         60543
  Queries completed:    60536 (99.99%)
  Queries lost:         7 (0.01%)

  Response codes:       NOERROR 42375 (70.00%), NXDOMAIN 18161 (30.00%)
  Average packet size:  request 37, response 53
  Run time (s):         3.003312
  Queries per second:   20156.080236

  Average Latency (s):  0.008804 (min 0.000013, max 0.101234)
  Latency StdDev (s):   0.010100
`
	tests := []struct {
		name    string
		in      string
		want    perfResult
		wantErr string
	}{
		{name: "full block", in: out, want: perfResult{qps: 20156.080236, avgLat: 8804 * time.Microsecond, completed: 60536, lost: 7,
			rcodes: "NOERROR 42375 (70.00%), NXDOMAIN 18161 (30.00%)"}},
		{name: "no statistics", in: "[Status] Command line: dnsperf\nError: socket: Too many open files\n", wantErr: "printed no statistics"},
		{name: "latency missing", in: "  Queries per second:   5.0\n", wantErr: "printed no statistics"},
		{name: "garbled qps", in: "  Queries per second:   fast\n  Average Latency (s):  0.1 (min 0, max 1)\n", wantErr: "dnsperf qps"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseDnsperf(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.qps != tt.want.qps || got.avgLat.Round(time.Microsecond) != tt.want.avgLat || got.completed != tt.want.completed ||
				got.lost != tt.want.lost || got.rcodes != tt.want.rcodes {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestParseStat(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		wantPPID int
		wantCPU  time.Duration
		wantErr  bool
	}{
		// utime 150, stime 50, cutime 30, cstime 20 ticks: 2.5 s.
		{name: "plain", in: "4242 (nginx) S 4241 4241 4241 0 -1 4194560 100 0 0 0 150 50 30 20 20 0 1 0 1000 1000 100", wantPPID: 4241, wantCPU: 2500 * time.Millisecond},
		{name: "name with spaces and parens", in: "7 (a (b) c) R 1 7 7 0 -1 0 0 0 0 0 1 2 3 4 20 0 1 0 5 6 7", wantPPID: 1, wantCPU: 100 * time.Millisecond},
		{name: "truncated", in: "7 (x) R 1 7", wantErr: true},
		{name: "no name", in: "7 x R 1", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseStat([]byte(tt.in))
			if tt.wantErr {
				if err == nil {
					t.Fatalf("parsed %+v, want an error", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.ppid != tt.wantPPID || got.cpu != tt.wantCPU {
				t.Errorf("got ppid %d cpu %v, want %d %v", got.ppid, got.cpu, tt.wantPPID, tt.wantCPU)
			}
		})
	}
}

// TestRatios checks that ratios are taken within a round and the median taken after: a
// contender twice as fast as the reference in every round is 2.00 however noisy the rounds.
func TestRatios(t *testing.T) {
	tb := &table{ref: "ref", metrics: []metric{{key: "qps", title: "qps", ratio: true}}}
	for r, v := range []float64{100, 300, 200} {
		tb.record(r, "ref", "qps", v)
		tb.record(r, "x", "qps", 2*v)
	}
	tb.record(3, "x", "qps", 1) // a round without the reference gives no ratio
	if got := median(tb.ratios("x", "qps")); got != 2 {
		t.Errorf("median ratio %v, want 2", got)
	}
	if got := median(tb.values("x", "qps")); got != 300 {
		t.Errorf("median value %v, want 300 (of 1, 200, 400, 600)", got)
	}
	if !math.IsNaN(median(nil)) {
		t.Error("median of nothing is not NaN")
	}
	md := tb.markdown()
	if !strings.Contains(md, "| x | 300 | 2.00 |") {
		t.Errorf("markdown lacks the row of x:\n%s", md)
	}
}

func TestRotate(t *testing.T) {
	xs := []string{"a", "b", "c"}
	for r, want := range [][]string{{"a", "b", "c"}, {"b", "c", "a"}, {"c", "a", "b"}, {"a", "b", "c"}} {
		if got := rotate(xs, r); !slices.Equal(got, want) {
			t.Errorf("round %d: %v, want %v", r, got, want)
		}
	}
}

func TestNumber(t *testing.T) {
	for _, tt := range []struct {
		v      float64
		digits int
		want   string
	}{{309800, 0, "309,800"}, {1234.567, 2, "1,234.57"}, {-1500, 0, "-1,500"}, {12, 1, "12.0"}, {math.NaN(), 0, "–"}} {
		if got := number(tt.v, tt.digits); got != tt.want {
			t.Errorf("number(%v, %d) = %q, want %q", tt.v, tt.digits, got, tt.want)
		}
	}
}

// TestMixNames checks the mix: 30% not on the list, and four in five of those carry the
// zone as a label or as a suffix without a label boundary, the shapes a matcher gets wrong.
func TestMixNames(t *testing.T) {
	names := mixNames()
	denied, lookalike := 0, 0
	for _, n := range names {
		if n == "bench.test" || strings.HasSuffix(n, ".bench.test") {
			continue
		}
		denied++
		if strings.Contains(n, "bench") {
			lookalike++
		}
	}
	if len(names) != 10000 || denied != 3000 || lookalike != 2400 {
		t.Errorf("%d names, %d denied, %d look like the zone; want 10,000, 3,000 and 2,400", len(names), denied, lookalike)
	}
}
