package resolver

import (
	"net/netip"
	"sync"
	"time"
)

// Rate limiting of UDP queries, per client address: a device stuck in a loop, or a flood
// with a forged source (reflection), must neither take the box's CPU nor fill the audit log
// with one line per packet. TCP is not limited: it cannot be forged, and it is where a
// limited client is sent.

const (
	// limitSlip: of the queries over the limit, every limitSlip-th gets an empty reply with
	// TC set, which makes a real client retry over TCP; the others get none (BIND's slip 2).
	limitSlip = 2
	// limitMaxClients bounds the clients tracked. A flood from forged sources brings a new
	// address per packet, each within its limit; once the table is full, clients not in it
	// are not limited, and idle entries are dropped at the next summary.
	limitMaxClients = 1 << 16
	// limitSummaryEvery is how often OnLimited hears what was limited.
	limitSummaryEvery = 10 * time.Second
)

// LimitEvent is what the limits did to one client over a period: the UDP queries over the
// rate limit answered with TC (Slipped) and those dropped unanswered (Dropped), or the TCP
// connections closed at once because the client held MaxTCPPerSource (TCPRefused; an
// event counts one or the other). One event stands for many packets or connections.
type LimitEvent struct {
	Client           netip.Addr
	From, Until      time.Time // the first and the last limited query or connection
	Dropped, Slipped uint64
	TCPRefused       uint64
}

func (ev LimitEvent) limited() uint64 { return ev.Dropped + ev.Slipped }

// limiter is a token bucket per client: rate tokens a second, at most rate in the bucket.
// The zero rate means no limit; use newLimiter.
type limiter struct {
	rate float64

	mu      sync.Mutex
	clients map[netip.Addr]*bucket
}

type bucket struct {
	tokens float64
	last   int64      // Unix nanoseconds of the last refill
	over   uint64     // queries over the limit, ever: every limitSlip-th slips
	ev     LimitEvent // what was limited since the last summary; zero counts: nothing
}

func newLimiter(rate int) *limiter {
	return &limiter{rate: float64(rate), clients: map[netip.Addr]*bucket{}}
}

// limitVerdict is what to do with one query.
type limitVerdict uint8

const (
	limitPass     limitVerdict = iota // answer it
	limitTruncate                     // answer with an empty, truncated reply
	limitDrop                         // do not answer
)

// take decides a query from a at time now (Unix nanoseconds).
func (l *limiter) take(a netip.Addr, now int64) limitVerdict {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.clients[a]
	if b == nil {
		if len(l.clients) >= limitMaxClients {
			return limitPass
		}
		b = &bucket{tokens: l.rate, last: now}
		l.clients[a] = b
	}
	if elapsed := now - b.last; elapsed > 0 {
		b.tokens = min(l.rate, b.tokens+l.rate*float64(elapsed)/float64(time.Second))
		b.last = now
	}
	if b.tokens >= 1 {
		b.tokens--
		return limitPass
	}
	b.over++
	at := time.Unix(0, now)
	if b.ev.limited() == 0 {
		b.ev = LimitEvent{Client: a, From: at}
	}
	b.ev.Until = at
	if b.over%limitSlip == 0 {
		b.ev.Slipped++
		return limitTruncate
	}
	b.ev.Dropped++
	return limitDrop
}

// summarize returns what was limited since the last call, one event per client, and forgets
// the clients whose buckets have been full (idle) since before now.
func (l *limiter) summarize(now int64) []LimitEvent {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []LimitEvent
	for a, b := range l.clients {
		if b.ev.limited() > 0 {
			out = append(out, b.ev)
			b.ev = LimitEvent{}
			continue
		}
		if b.tokens+l.rate*float64(now-b.last)/float64(time.Second) >= l.rate {
			delete(l.clients, a)
		}
	}
	return out
}
