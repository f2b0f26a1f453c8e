package store

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/lnm-project/lnm/audit"
)

// Keys must sort like the values they encode, or ranges and ReverseLowerBound go wrong.
func TestKeyOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	times := []time.Time{{}, time.Unix(0, 0), time.Unix(-1, 999_999_999), t0, t0.Add(time.Nanosecond), time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)}
	for range 200 {
		times = append(times, time.Unix(rng.Int64N(1<<40)-(1<<39), rng.Int64N(1e9)))
	}
	for _, a := range times {
		for _, b := range times {
			if got, want := bytes.Compare(appendTime(nil, a), appendTime(nil, b)), a.Compare(b); got != want {
				t.Fatalf("time keys of %v and %v compare %d, times %d", a, b, got, want)
			}
		}
	}
	seqs := []uint64{0, 1, 15, 16, 255, 256, 1 << 32, 1<<64 - 1}
	for range 200 {
		seqs = append(seqs, rng.Uint64()>>rng.UintN(64))
	}
	for _, a := range seqs {
		for _, b := range seqs {
			want := 0
			if a < b {
				want = -1
			} else if a > b {
				want = 1
			}
			if got := bytes.Compare(appendSeq(nil, a), appendSeq(nil, b)); got != want {
				t.Fatalf("seq keys of %d and %d compare %d", a, b, got)
			}
		}
	}
}

func TestKeyParts(t *testing.T) {
	tests := []struct{ name, got, want string }{
		{"mapped address is the IPv4 address", string(appendAddr(nil, netip.MustParseAddr("::ffff:10.0.0.1"))), string(appendAddr(nil, netip.MustParseAddr("10.0.0.1")))},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s: %q, want %q", tt.name, tt.got, tt.want)
		}
	}
	first, last := prefixRange(netip.MustParsePrefix("10.3.0.9/31"))
	if first != netip.MustParseAddr("10.3.0.8") || netip.AddrFrom16(last).Unmap() != netip.MustParseAddr("10.3.0.9") {
		t.Errorf("prefixRange(10.3.0.9/31) = %v, %v", first, netip.AddrFrom16(last))
	}
}

// TestNameBucketsShared: names of one bucket share the name index's entries; a query for one
// name returns its records only, with a Limit too, whether the others sit in its block or in
// blocks of their own.
func TestNameBucketsShared(t *testing.T) {
	var same []string // names in one bucket
	for i := 0; len(same) < 3; i++ {
		if n := fmt.Sprintf("h%d.example.com", i); nameBucket(n) == nameBucket("h0.example.com") {
			same = append(same, n)
		}
	}
	s := newStore(t, Config{})
	seq := uint64(0)
	add := func(name string) {
		seq++
		r := dnsAt(seq, time.Duration(seq)*time.Second, "10.3.0.7", name, audit.VerdictAllow)
		s.Add(&r)
	}
	add(same[0]) // block 1: the name alone
	s.Flush()
	add(same[1]) // block 2: the others only
	add(same[2])
	s.Flush()
	add(same[0]) // block 3: all together
	add(same[1])
	s.Flush()
	for _, f := range []audit.Filter{{Name: pattern(t, same[0])}, {Name: pattern(t, same[0]), Limit: 1}} {
		got := seqs(s.Query(f))
		want := []uint64{1, 4}
		if f.Limit == 1 {
			want = []uint64{4}
		}
		if !slices.Equal(got, want) {
			t.Errorf("%+v: got %v, want %v", f, got, want)
		}
	}
}
