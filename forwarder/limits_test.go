package forwarder

import (
	"net/netip"
	"testing"
	"time"

	"github.com/lnm-project/lnm/allowlist"
)

// TestDecideAdmit: the admission decision over each limit, asserted on its reason, with
// the order in which the limits apply (faults catalog items 10 and 20).
func TestDecideAdmit(t *testing.T) {
	lim := srcLimits{conns: 4, pending: 2, rate: 10, burst: 20}
	for _, tc := range []struct {
		name string
		in   admitInput
		want admitDecision
	}{
		{"a first connection", admitInput{lim: lim, hello: true, tokens: 20, maxConns: 100, maxPend: 10},
			admitDecision{spend: true}},
		{"rate: no token left", admitInput{lim: lim, hello: true, tokens: 0.5, maxConns: 100, maxPend: 10},
			admitDecision{reason: ReasonConnRateLimited}},
		{"rate off: no bucket", admitInput{lim: srcLimits{conns: 4}, hello: true, maxConns: 100, maxPend: 10},
			admitDecision{}},
		{"source at its connection cap", admitInput{lim: lim, hello: true, tokens: 5, conns: 4, maxConns: 100, maxPend: 10},
			admitDecision{reason: ReasonTooManyConns, spend: true}},
		{"box at its connection cap", admitInput{lim: lim, hello: true, tokens: 5, total: 100, maxConns: 100, maxPend: 10},
			admitDecision{reason: ReasonTooManyConns, spend: true}},
		{"connection caps off", admitInput{lim: srcLimits{}, hello: true, conns: 1e6, total: 1e6, maxPend: 10},
			admitDecision{}},
		{"source at its pending cap", admitInput{lim: lim, hello: true, tokens: 5, conns: 2, pending: 2, maxConns: 100, maxPend: 10},
			admitDecision{reason: ReasonTooManyPending, spend: true}},
		{"a tcp route waits for no hello", admitInput{lim: lim, tokens: 5, conns: 2, pending: 2, pendingTotal: 10, maxConns: 100, maxPend: 10},
			admitDecision{spend: true}},
		{"table full, another source holds more: evict", admitInput{lim: lim, hello: true, tokens: 5, pendingTotal: 10, topPending: 6, maxConns: 100, maxPend: 10},
			admitDecision{evict: true, spend: true}},
		{"table full, the top source holds one more: refuse", admitInput{lim: srcLimits{conns: 4, pending: 8}, hello: true, pending: 5, pendingTotal: 10, topPending: 6, maxConns: 100, maxPend: 10},
			admitDecision{reason: ReasonTooManyPending}},
		{"table full, the newcomer is the top source: refuse", admitInput{lim: srcLimits{pending: 20}, hello: true, pending: 10, pendingTotal: 10, topPending: 10, maxPend: 10},
			admitDecision{reason: ReasonTooManyPending}},
		{"pending table off", admitInput{lim: srcLimits{}, hello: true, pendingTotal: 1e6}, admitDecision{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := decideAdmit(tc.in); got != tc.want {
				t.Errorf("decideAdmit = %+v, want %+v", got, tc.want)
			}
		})
	}
}

// TestHelloTimeout: the hello deadline shrinks as the pending table fills.
func TestHelloTimeout(t *testing.T) {
	for _, tc := range []struct {
		name              string
		base              time.Duration
		pending, capacity int
		want              time.Duration
	}{
		{"empty", 10 * time.Second, 1, 1024, 10 * time.Second},
		{"half full", 10 * time.Second, 512, 1024, 10 * time.Second},
		{"three quarters", 10 * time.Second, 768, 1024, 5 * time.Second},
		{"full", 10 * time.Second, 1024, 1024, time.Second},
		{"short base stays", 500 * time.Millisecond, 1024, 1024, 500 * time.Millisecond},
		{"no cap", 10 * time.Second, 5000, 0, 10 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := helloTimeout(tc.base, tc.pending, tc.capacity); got != tc.want {
				t.Errorf("helloTimeout(%v, %d, %d) = %v, want %v", tc.base, tc.pending, tc.capacity, got, tc.want)
			}
		})
	}
}

func testLimits(c Config) limits {
	c.MaxPending = orDefault(c.MaxPending, DefaultMaxPending)
	c.MaxPendingPerSrc = orDefault(c.MaxPendingPerSrc, DefaultMaxPendingPerSrc)
	return newLimits(&c)
}

// TestGateEvictsTheTopSource (faults catalog item 10): with the pending table full of one
// source's silent connections, a newcomer from another source gets in, and the one evicted
// is the flood's oldest.
func TestGateEvictsTheTopSource(t *testing.T) {
	lim := testLimits(Config{MaxPending: 4, MaxPendingPerSrc: 10, ConnRate: -1})
	g := newGate()
	flood, other := netip.MustParseAddr("127.0.0.2"), netip.MustParseAddr("127.0.0.3")
	var held []*stream
	for i := range 4 {
		s := &stream{src: flood}
		if r, v, _ := g.admit(s, &lim, true, time.Second, 0); r != "" || v != nil {
			t.Fatalf("flood connection %d: %q, victim %v", i, r, v)
		}
		held = append(held, s)
	}
	s := &stream{src: other}
	r, victim, _ := g.admit(s, &lim, true, time.Second, 0)
	if r != "" || victim != held[0] {
		t.Fatalf("newcomer: reason %q, victim %p; want admitted, evicting %p", r, victim, held[0])
	}
	if !g.helloDone(victim) {
		t.Error("the victim does not learn it was evicted")
	}
	// The table is full again, with the flood holding 3 and the newcomer 1: a second
	// connection of the newcomer's source still evicts (3 > 1+1), a third does not (2 = 2).
	if r, v, _ := g.admit(&stream{src: other}, &lim, true, time.Second, 0); r != "" || v != held[1] {
		t.Fatalf("second newcomer: %q, victim %p, want %p", r, v, held[1])
	}
	if r, _, _ := g.admit(&stream{src: other}, &lim, true, time.Second, 0); r != ReasonTooManyPending {
		t.Fatalf("third newcomer: %q, want %s", r, ReasonTooManyPending)
	}
	if got := g.limited[2].Load() + g.limited[3].Load(); got != 3 {
		t.Errorf("counted %d pending refusals and evictions, want 3", got)
	}
	for _, s := range held {
		g.helloDone(s)
		g.release(s)
	}
	if g.pend != 2 || g.total != 2 {
		t.Errorf("after the flood left: %d pending, %d open; want 2 and 2", g.pend, g.total)
	}
}

// TestGateRateAndChildren: the rate bucket refills with time, and a child box gets
// DefaultChildFactor times a device's limits.
func TestGateRateAndChildren(t *testing.T) {
	lim := testLimits(Config{ConnRate: 2, MaxConnsPerSrc: 3, Children: []netip.Prefix{netip.MustParsePrefix("198.18.3.2/32")}})
	device, child := netip.MustParseAddr("198.18.3.20"), netip.MustParseAddr("198.18.3.2")
	g := newGate()
	admitted := func(src netip.Addr, n int, now int64) (got int, last allowlist.Reason) {
		for range n {
			s := &stream{src: src}
			r, _, _ := g.admit(s, &lim, false, 0, now)
			if r == "" {
				got++
				g.release(s)
			}
			last = r
		}
		return got, last
	}
	if got, last := admitted(device, 10, 0); got != 4 || last != ReasonConnRateLimited {
		t.Errorf("a device's burst: %d admitted, last %q; want 4 (twice the rate), then conn_rate_limited", got, last)
	}
	if got, _ := admitted(device, 10, int64(time.Second)); got != 2 {
		t.Errorf("a second later: %d admitted, want 2", got)
	}
	if got, _ := admitted(child, 100, 0); got != 4*DefaultChildFactor {
		t.Errorf("a child's burst: %d admitted, want %d", got, 4*DefaultChildFactor)
	}
	var open []*stream
	for range 4 { // a full bucket holds 4: three admitted, the fourth over the cap

		s := &stream{src: device}
		if r, _, _ := g.admit(s, &lim, false, 0, int64(time.Hour)); r == "" {
			open = append(open, s)
		} else if r != ReasonTooManyConns {
			t.Errorf("over the cap: %q", r)
		}
	}
	if len(open) != 3 {
		t.Errorf("%d connections held, want 3 (MaxConnsPerSrc)", len(open))
	}
}

// TestGateRecordsAFewThenSummarizes: a source's flood denials are recorded up to
// limitRecordsPerSrc a period, then counted in one LimitEvent, and idle sources are
// forgotten.
func TestGateRecordsAFewThenSummarizes(t *testing.T) {
	lim := testLimits(Config{})
	g := newGate()
	a := netip.MustParseAddr("127.0.0.2")
	s := &stream{src: a}
	g.admit(s, &lim, true, time.Second, 0)
	t0 := time.Unix(100, 0)
	recorded := 0
	for i := range 50 {
		if g.record(a, t0.Add(time.Duration(i)*time.Millisecond)) {
			recorded++
		}
	}
	if recorded != limitRecordsPerSrc {
		t.Errorf("%d recorded, want %d", recorded, limitRecordsPerSrc)
	}
	evs := g.summarize(&lim, int64(time.Hour))
	if len(evs) != 1 || evs[0].Client != a || evs[0].Count != 40 || !evs[0].From.Equal(t0.Add(10*time.Millisecond)) || !evs[0].Until.Equal(t0.Add(49*time.Millisecond)) {
		t.Fatalf("summary %+v, want one event of 40 from the 11th to the 50th", evs)
	}
	if !g.record(a, t0) {
		t.Error("a new period records again")
	}
	g.helloDone(s)
	g.release(s)
	g.summarize(&lim, int64(time.Hour))
	if len(g.srcs) != 0 {
		t.Errorf("%d idle sources still tracked", len(g.srcs))
	}
}

// BenchmarkGate measures admitting and releasing one connection of a source among many:
// the hot path takes one lock and allocates nothing.
func BenchmarkGate(b *testing.B) {
	lim := testLimits(Config{ConnRate: 1 << 30})
	g := newGate()
	var srcs [64]netip.Addr
	for i := range srcs {
		srcs[i] = netip.AddrFrom4([4]byte{127, 0, 1, byte(i)})
	}
	streams := make([]stream, len(srcs))
	for i := range streams {
		streams[i].src = srcs[i]
	}
	b.ReportAllocs()
	now := time.Now().UnixNano()
	for i := 0; b.Loop(); i++ {
		s := &streams[i%len(streams)]
		if r, _, _ := g.admit(s, &lim, true, time.Second, now+int64(i)); r != "" {
			b.Fatal(r)
		}
		g.helloDone(s)
		g.release(s)
	}
}
