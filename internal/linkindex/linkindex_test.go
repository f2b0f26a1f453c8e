package linkindex

import (
	"net/netip"
	"testing"
	"time"

	"github.com/lnm-project/lnm/audit"
)

var t0 = time.Date(2026, 12, 3, 8, 0, 0, 0, time.UTC)

func query(seq uint64, off time.Duration, client, name string, answered bool) *audit.Record {
	r := &audit.Record{Seq: seq, Time: t0.Add(off), Kind: audit.KindDNS,
		Client: netip.AddrPortFrom(netip.MustParseAddr(client), 0), Name: name}
	if answered {
		r.Answer = []netip.Addr{netip.MustParseAddr("198.18.3.1")}
	}
	return r
}

func TestLookup(t *testing.T) {
	x := New(time.Minute)
	x.Add(query(1, 0, "198.18.3.20", "a.test", true))
	x.Add(query(2, time.Second, "198.18.3.20", "a.test", false)) // an empty AAAA after the A
	x.Add(query(3, 2*time.Second, "198.18.3.21", "b.test", true))
	dev := netip.MustParseAddr("198.18.3.20")
	for _, tc := range []struct {
		name     string
		client   netip.Addr
		host     string
		at       time.Duration
		wantSeq  uint64
		wantFlag Flags
	}{
		{"answered query wins over a later empty one", dev, "a.test", 5 * time.Second, 1, Flags{}},
		{"before the query", dev, "a.test", -time.Second, 0, Flags{Unlinked: true}},
		{"past the window", dev, "a.test", 2 * time.Minute, 0, Flags{Unlinked: true}},
		{"another name asked", dev, "c.test", 5 * time.Second, 0, Flags{Unlinked: true, Mismatch: true}},
		{"a client that asked nothing", netip.MustParseAddr("198.18.3.99"), "a.test", 5 * time.Second, 0, Flags{Unlinked: true}},
	} {
		seq, fl := x.Lookup(tc.client, tc.host, t0.Add(tc.at))
		if seq != tc.wantSeq || fl != tc.wantFlag {
			t.Errorf("%s: %d %+v, want %d %+v", tc.name, seq, fl, tc.wantSeq, tc.wantFlag)
		}
	}
}

func TestOpenAndForget(t *testing.T) {
	x := New(time.Minute)
	open := &audit.Record{Kind: audit.KindConn, Event: audit.EventOpen, ID: 7, Time: t0, SNI: "a.test",
		Client: netip.MustParseAddrPort("198.18.3.20:4000"), QuerySeq: 1, Flags: []string{audit.FlagSNIMismatch}}
	x.Add(open)
	if l, ok := x.Open(7); !ok || l.Seq != 1 || l.Flags != (Flags{Mismatch: true}) {
		t.Fatalf("Open(7) = %+v %v", l, ok)
	}
	x.ForgetConns(t0.Add(time.Second))
	if _, ok := x.Open(7); ok {
		t.Error("a connection opened before the cutoff is still held")
	}
	x.Add(open)
	closed := *open
	closed.Event = audit.EventClose
	x.Add(&closed)
	if _, ok := x.Open(7); ok {
		t.Error("a closed connection is still held")
	}
}

func TestGenerations(t *testing.T) {
	x := New(time.Minute)
	dev := netip.MustParseAddr("198.18.3.20")
	x.Add(query(1, 0, dev.String(), "a.test", true))
	for i := range 10 {
		x.Add(query(uint64(i+2), time.Duration(i+1)*15*time.Second, "198.18.3.21", "b.test", true))
	}
	if x.Holds(dev, "a.test") {
		t.Error("after 2.5 windows the index still holds the first query")
	}
	if !x.Holds(netip.MustParseAddr("198.18.3.21"), "b.test") {
		t.Error("the latest query is gone")
	}
}
