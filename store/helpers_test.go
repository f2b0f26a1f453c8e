package store

import (
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/lnm-project/lnm/audit"
	"github.com/lnm-project/lnm/internal/testkit"
)

// TestMain fails the package when any test leaves a goroutine running (a store's Run).
func TestMain(m *testing.M) { testkit.Main(m) }

// t0 is the fake clock's start.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// clock is a fake clock for age eviction.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: t0} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func newStore(t testing.TB, cfg Config) *Store {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// dnsAt is a dns record from client (an address) asking for name, at t0 plus off.
func dnsAt(seq uint64, off time.Duration, client, name, verdict string) audit.Record {
	return audit.Record{
		Seq: seq, Time: t0.Add(off), Box: "l3", Level: 3, Kind: audit.KindDNS,
		Client: netip.AddrPortFrom(netip.MustParseAddr(client), 0), Name: name, QType: "A",
		Verdict: verdict, Rcode: "NOERROR", Answer: []netip.Addr{netip.MustParseAddr("10.3.0.1")},
	}
}

// connAt is a conn open from client (ip:port) with sni through via, at t0 plus off.
func connAt(seq uint64, off time.Duration, client, sni, via string) audit.Record {
	return audit.Record{
		Seq: seq, Time: t0.Add(off), Box: "l3", Level: 3, Kind: audit.KindConn,
		Event: audit.EventOpen, ID: seq, Client: netip.MustParseAddrPort(client), Port: 443,
		SNI: sni, Verdict: audit.VerdictAllow, Via: via,
		Upstream: netip.MustParseAddrPort("10.4.0.1:443"),
	}
}

func seqs(rs []audit.Record) []uint64 {
	out := make([]uint64, len(rs))
	for i := range rs {
		out[i] = rs[i].Seq
	}
	return out
}

// add adds a copy of r without waiting for it to be inserted.
func add(s *Store, r audit.Record) { s.Add(&r) }
