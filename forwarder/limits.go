package forwarder

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lnm-project/lnm/allowlist"
)

// Limits on what one device, and all of them together, may hold of a listen address: one
// device must not take every connection slot (faults catalog item 20), and a flood of
// connections that never speak must not starve established streams, DNS, or a new honest
// device (item 10). Past a limit a connection is closed at once, before its hello is read.
const (
	// DefaultMaxConns caps the connections open at once, waiting or spliced, on one listen
	// address: each spliced one holds two descriptors of the box's 65,536.
	DefaultMaxConns = 10000
	// DefaultMaxConnsPerSrc caps them per source address: loose enough for a NATed segment.
	DefaultMaxConnsPerSrc = 256
	// DefaultConnRate is each source's new connections a second, with bursts of twice as
	// many: a device that reconnects now and then stays far below it, a loop does not.
	DefaultConnRate = 100
	// DefaultMaxPending and DefaultMaxPendingPerSrc cap the connections still waiting for
	// their ClientHello.
	DefaultMaxPending       = 1024
	DefaultMaxPendingPerSrc = 64
	// DefaultChildFactor raises every per-source limit for a child box (Config.Children): a
	// whole level of devices sits behind its one address.
	DefaultChildFactor = 16

	// limitRecordsPerSrc is how many connections of one source closed by a limit or
	// without a hello get a deny record of their own in a summary period; the rest are
	// counted in one LimitEvent per source and period.
	limitRecordsPerSrc = 10
	// limitSummaryEvery is how often OnLimited hears what was not recorded one by one.
	limitSummaryEvery = 10 * time.Second
	// minHelloTimeout is as short as a full pending table makes the hello deadline.
	minHelloTimeout = time.Second
)

// LimitEvent counts one source's connections that were closed without a record of their
// own over a period (a limit refused them or they never sent a ClientHello, beyond the
// first few recorded one by one): one event stands for many connections.
type LimitEvent struct {
	Client      netip.Addr
	From, Until time.Time // the first and the last of them
	Count       uint64
}

// srcLimits are the limits of one source; zero or less: none.
type srcLimits struct {
	conns, pending int
	rate, burst    float64 // new connections a second, and at most at once
}

// limits are a config's limits with the defaults filled in (Config.limits).
type limits struct {
	maxConns, maxPending int // in all; zero: none
	perSrc, perChild     srcLimits
	children             allowlist.Prefixes
}

func newLimits(c *Config) limits {
	factor := c.ChildFactor
	if factor <= 0 {
		factor = DefaultChildFactor
	}
	src := srcLimits{conns: orDefault(c.MaxConnsPerSrc, DefaultMaxConnsPerSrc), pending: c.MaxPendingPerSrc}
	if rate := orDefault(c.ConnRate, DefaultConnRate); rate > 0 {
		src.rate, src.burst = float64(rate), 2*float64(rate)
	}
	child := srcLimits{conns: src.conns * factor, pending: src.pending * factor, rate: src.rate * float64(factor), burst: src.burst * float64(factor)}
	return limits{
		maxConns:   orDefault(c.MaxConns, DefaultMaxConns),
		maxPending: c.MaxPending,
		perSrc:     src, perChild: child,
		children: allowlist.Prefixes(c.Children),
	}
}

// orDefault reads a limit field: zero is the default, negative is none (0 here).
func orDefault(n, def int) int {
	switch {
	case n == 0:
		return def
	case n < 0:
		return 0
	}
	return n
}

// admitInput is what the admission of one new connection depends on.
type admitInput struct {
	lim                 srcLimits // the source's, raised for a child box
	maxConns, maxPend   int       // in all; zero: none
	hello               bool      // the connection will wait for a ClientHello (a proxy port)
	conns, pending      int       // the source's open and waiting connections
	total, pendingTotal int       // everyone's
	tokens              float64   // the source's rate bucket, refilled to now
	// topPending is what the source holding the most waiting connections holds; it is read
	// only when the pending table is full.
	topPending int
}

// admitDecision is what to do with a new connection.
type admitDecision struct {
	// reason is why it is closed at once; empty: admitted.
	reason allowlist.Reason
	// evict: admitted, once the oldest waiting connection of the source holding the most
	// is closed to make room.
	evict bool
	// spend: the attempt takes a token from the source's rate bucket.
	spend bool
}

// decideAdmit is the admission decision: the source's rate first (every attempt it lets
// through counts, admitted or not, so hammering at a cap stays bounded), then the open
// connections of the source and of all, then the waiting ones. A full pending table does
// not turn the newcomer away while another source holds more than the newcomer would: that
// source's oldest waiting connection makes room, so a flood keeps its own share and new
// devices still get in.
func decideAdmit(in admitInput) admitDecision {
	if in.lim.rate > 0 && in.tokens < 1 {
		return admitDecision{reason: ReasonConnRateLimited}
	}
	d := admitDecision{spend: in.lim.rate > 0}
	switch {
	case in.lim.conns > 0 && in.conns >= in.lim.conns, in.maxConns > 0 && in.total >= in.maxConns:
		d.reason = ReasonTooManyConns
	case !in.hello:
	case in.lim.pending > 0 && in.pending >= in.lim.pending:
		d.reason = ReasonTooManyPending
	case in.maxPend > 0 && in.pendingTotal >= in.maxPend:
		if in.topPending > in.pending+1 {
			d.evict = true
		} else {
			d.reason = ReasonTooManyPending
		}
	}
	return d
}

// helloTimeout is the hello deadline of a connection admitted when pending connections
// wait (itself included) of at most capacity: the full timeout up to half full, then shorter in
// proportion to the room left, down to minHelloTimeout (or base, if shorter) when full, so
// that silent connections give their slots back sooner the fuller the table.
func helloTimeout(base time.Duration, pending, capacity int) time.Duration {
	if capacity <= 0 || 2*pending <= capacity {
		return base
	}
	d := time.Duration(int64(base) * int64(2*(capacity-pending)) / int64(capacity))
	return min(base, max(d, minHelloTimeout))
}

// floodReason reports whether a denial may be counted in a summary instead of recorded
// on its own: a limit's, or a connection that never sent a ClientHello. Decisions on a
// hello that arrived are always recorded.
func floodReason(r allowlist.Reason) bool {
	switch r {
	case ReasonTooManyConns, ReasonConnRateLimited, ReasonTooManyPending, ReasonHelloEvicted, ReasonHelloTimeout, ReasonClientClosed:
		return true
	}
	return false
}

// limitedReasons are the reasons Limited counts, in the order of gate.limited.
var limitedReasons = [...]allowlist.Reason{ReasonTooManyConns, ReasonConnRateLimited, ReasonTooManyPending, ReasonHelloEvicted}

// srcState is what the gate knows of one source address.
type srcState struct {
	conns, pending int
	tokens         float64
	last           int64   // Unix nanoseconds of the last refill
	oldest, newest *stream // the waiting connections, oldest first (stream.prev, next)
	recorded       int     // deny records written this period
	ev             LimitEvent
}

// gate admits connections under the limits and keeps what each source holds. Its zero value
// is not ready; use newGate.
type gate struct {
	mu           sync.Mutex
	total, pend  int
	srcs         map[netip.Addr]*srcState
	limited      [len(limitedReasons)]atomic.Uint64
	unrecorded   atomic.Uint64 // denials counted in LimitEvents instead of recorded
	summaryEvery time.Duration
}

func newGate() *gate {
	return &gate{srcs: map[netip.Addr]*srcState{}, summaryEvery: limitSummaryEvery}
}

// admit decides a new connection s under lim at now (Unix nanoseconds). Admitted (reason
// empty), s holds a slot until release, and a waiting one (hello) a pending slot until
// helloDone; victim, if not nil, is a waiting connection the caller must close. timeout is
// the hello deadline to give s.
func (g *gate) admit(s *stream, lim *limits, hello bool, base time.Duration, now int64) (reason allowlist.Reason, victim *stream, timeout time.Duration) {
	g.mu.Lock()
	defer g.mu.Unlock()
	st := g.srcs[s.src]
	sl := lim.perSrc
	if lim.children.Contains(s.src) {
		sl = lim.perChild
	}
	if st == nil {
		st = &srcState{tokens: sl.burst, last: now}
		g.srcs[s.src] = st
	}
	if elapsed := now - st.last; elapsed > 0 {
		st.tokens = min(sl.burst, st.tokens+sl.rate*float64(elapsed)/float64(time.Second))
		st.last = now
	}
	in := admitInput{lim: sl, maxConns: lim.maxConns, maxPend: lim.maxPending, hello: hello,
		conns: st.conns, pending: st.pending, total: g.total, pendingTotal: g.pend, tokens: st.tokens}
	var top *srcState
	if hello && lim.maxPending > 0 && g.pend >= lim.maxPending {
		top = g.topPending()
		in.topPending = top.pending
	}
	d := decideAdmit(in)
	if d.spend {
		st.tokens--
	}
	if d.reason != "" {
		g.count(d.reason)
		return d.reason, nil, 0
	}
	if d.evict {
		victim = top.oldest
		g.unlinkPending(top, victim)
		victim.evicted = true
		g.count(ReasonHelloEvicted)
	}
	st.conns++
	g.total++
	if hello {
		g.linkPending(st, s)
		timeout = helloTimeout(base, g.pend, lim.maxPending)
	}
	return "", victim, timeout
}

// topPending returns the source with the most waiting connections. g.mu is held and at
// least one connection waits. It walks every source, which only a full table asks for.
func (g *gate) topPending() *srcState {
	var top *srcState
	for _, st := range g.srcs {
		if top == nil || st.pending > top.pending {
			top = st
		}
	}
	return top
}

func (g *gate) count(r allowlist.Reason) {
	for i, lr := range limitedReasons {
		if lr == r {
			g.limited[i].Add(1)
		}
	}
}

func (g *gate) linkPending(st *srcState, s *stream) {
	s.waiting, s.prev, s.next = true, st.newest, nil
	if st.newest != nil {
		st.newest.next = s
	} else {
		st.oldest = s
	}
	st.newest = s
	st.pending++
	g.pend++
}

func (g *gate) unlinkPending(st *srcState, s *stream) {
	if s.prev != nil {
		s.prev.next = s.next
	} else {
		st.oldest = s.next
	}
	if s.next != nil {
		s.next.prev = s.prev
	} else {
		st.newest = s.prev
	}
	s.waiting, s.prev, s.next = false, nil, nil
	st.pending--
	g.pend--
}

// helloDone gives back s's pending slot once its hello is read (or failed) and reports
// whether s was evicted meanwhile: its failure, or its success, is then the eviction's.
func (g *gate) helloDone(s *stream) (evicted bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if s.waiting {
		g.unlinkPending(g.srcs[s.src], s)
	}
	return s.evicted
}

// release gives back the slots of an admitted connection that ended, when its serving
// goroutine returns; a spliced stream's slots are freed by its pipe's end (free).
func (g *gate) release(s *stream) {
	if !s.spliced { // else the pipe's end frees it
		g.free(s)
	}
}

func (g *gate) free(s *stream) {
	g.mu.Lock()
	defer g.mu.Unlock()
	st := g.srcs[s.src]
	if s.waiting {
		g.unlinkPending(st, s)
	}
	st.conns--
	g.total--
}

// record reports whether a denial of a connection from src for a flood reason gets a record
// of its own at now; if not, it is counted for src's next LimitEvent.
func (g *gate) record(src netip.Addr, now time.Time) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	st := g.srcs[src]
	if st == nil {
		return true
	}
	if st.recorded < limitRecordsPerSrc {
		st.recorded++
		return true
	}
	if st.ev.Count == 0 {
		st.ev = LimitEvent{Client: src, From: now}
	}
	st.ev.Count++
	st.ev.Until = now
	g.unrecorded.Add(1)
	return false
}

// summarize returns the LimitEvents of the period that ends at now, starts the next one, and
// forgets the sources that hold nothing and whose rate bucket is full again.
func (g *gate) summarize(lim *limits, now int64) []LimitEvent {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []LimitEvent
	for a, st := range g.srcs {
		if st.ev.Count > 0 {
			out = append(out, st.ev)
		}
		st.ev, st.recorded = LimitEvent{}, 0
		sl := lim.perSrc
		if lim.children.Contains(a) {
			sl = lim.perChild
		}
		if st.conns == 0 && st.tokens+sl.rate*float64(now-st.last)/float64(time.Second) >= sl.burst {
			delete(g.srcs, a)
		}
	}
	return out
}

// Limited is how many connections the limits closed since New, for one of the reasons
// ReasonTooManyConns, ReasonConnRateLimited, ReasonTooManyPending and ReasonHelloEvicted
// (zero for any other), recorded or not.
func (f *Forwarder) Limited(r allowlist.Reason) uint64 {
	for i, lr := range limitedReasons {
		if lr == r {
			return f.gate.limited[i].Load()
		}
	}
	return 0
}

// Unrecorded is how many denied connections were counted in LimitEvents instead of being
// recorded one by one, since New.
func (f *Forwarder) Unrecorded() uint64 { return f.gate.unrecorded.Load() }

// summarizeLimits hands OnLimited the LimitEvents every summary period, and a last time
// when stop closes.
func (f *Forwarder) summarizeLimits(stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	tick := time.NewTicker(f.gate.summaryEvery)
	defer tick.Stop()
	report := func() {
		lim := f.conf.Load().limits
		for _, ev := range f.gate.summarize(&lim, time.Now().UnixNano()) {
			if f.cfg.OnLimited != nil {
				f.cfg.OnLimited(ev)
			}
		}
	}
	for {
		select {
		case <-tick.C:
			report()
		case <-stop:
			report()
			return
		}
	}
}
