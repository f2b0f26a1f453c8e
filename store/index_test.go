package store

import (
	"bytes"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"
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
