package store

import (
	"net/netip"
	"sync"
	"time"

	"github.com/lnm-project/lnm/audit"
)

// linkIndex is what Link reads: for each client and name, the latest queries; for each
// client, its latest queries of any name; for each open connection, its link. Add writes it
// before the record is queued, so a connection that follows its answer by a millisecond
// links although memdb has not inserted the query yet, and every operation is a map access
// under one short lock.
//
// Queries live in two generations of maps. A generation starts with the first query more
// than a window after the current one started; starting one drops the one before, whose
// queries were all more than a window old by then. So a query is kept at least a window
// and at most two, without a sweep.
type linkIndex struct {
	window int64 // nanoseconds

	mu    sync.Mutex
	start int64 // the current generation's first query time
	cur   linkGen
	prev  linkGen
	conns map[uint64]connLink // open connections by id, until their close is added
}

// linkGen is one generation of queries.
type linkGen struct {
	names   map[clientName]*nameLinks
	clients map[netip.Addr]*refs // a client's latest queries of any name, for sni_mismatch
}

func newLinkGen() linkGen {
	return linkGen{names: map[clientName]*nameLinks{}, clients: map[netip.Addr]*refs{}}
}

type clientName struct {
	addr netip.Addr
	name string
}

// linkRef is one query: its seq, time (Unix nanoseconds) and, where it is not the key,
// its name.
type linkRef struct {
	seq  uint64
	at   int64
	name string
}

// refs are the latest two queries of one kind, newest first; a zero seq is an empty slot.
// Two, not one: a query that arrives between a connection's start and its Link must not
// hide the one before it.
type refs [2]linkRef

// add keeps r if it is among the newest two, by time then seq; the same seq again
// replaces its entry.
func (rs *refs) add(r linkRef) {
	switch r.seq {
	case rs[0].seq:
		rs[0], rs[1] = rs[1], linkRef{}
	case rs[1].seq:
		rs[1] = linkRef{}
	}
	switch {
	case rs[0].seq == 0 || newer(r, rs[0]):
		rs[1], rs[0] = rs[0], r
	case rs[1].seq == 0 || newer(r, rs[1]):
		rs[1] = r
	}
}

func newer(a, b linkRef) bool { return a.at > b.at || (a.at == b.at && a.seq > b.seq) }

// latest returns the newest query in [from, to].
func (rs *refs) latest(from, to int64) (linkRef, bool) {
	for _, r := range rs {
		if r.seq != 0 && r.at <= to && r.at >= from {
			return r, true
		}
	}
	return linkRef{}, false
}

// nameLinks are one client's latest queries for one name: those that returned addresses,
// and all of them.
type nameLinks struct {
	answered, any refs
}

// connLink is an open connection's link, so that its close agrees with it.
type connLink struct {
	seq   uint64
	flags linkFlags
	at    int64 // the open's time, for forgetConns
}

func newLinkIndex(window time.Duration) *linkIndex {
	return &linkIndex{window: int64(window), cur: newLinkGen(), prev: newLinkGen(), conns: map[uint64]connLink{}}
}

// add notes what r tells linking: a dns query, a connection's open (its link) or its close
// (forget the link). Records without a time or a client are no use to linking.
func (x *linkIndex) add(r *audit.Record) {
	if r.Time.IsZero() || !r.Client.IsValid() {
		return
	}
	at := r.Time.UnixNano()
	switch r.Kind {
	case audit.KindDNS:
		addr := r.Client.Addr().Unmap()
		ref := linkRef{seq: r.Seq, at: at}
		x.mu.Lock()
		defer x.mu.Unlock()
		x.rotate(at)
		k := clientName{addr, r.Name}
		nl := x.cur.names[k]
		if nl == nil {
			nl = new(nameLinks)
			x.cur.names[k] = nl
		}
		nl.any.add(ref)
		if len(r.Answer) > 0 {
			nl.answered.add(ref)
		}
		cl := x.cur.clients[addr]
		if cl == nil {
			cl = new(refs)
			x.cur.clients[addr] = cl
		}
		ref.name = r.Name
		cl.add(ref)
	case audit.KindConn:
		if r.ID == 0 || !linkable(r) {
			return
		}
		x.mu.Lock()
		defer x.mu.Unlock()
		switch r.Event {
		case audit.EventOpen:
			x.conns[r.ID] = connLink{
				seq:   r.QuerySeq,
				flags: linkFlags{unlinked: r.HasFlag(audit.FlagUnlinked), mismatch: r.HasFlag(audit.FlagSNIMismatch)},
				at:    at,
			}
		case audit.EventClose:
			delete(x.conns, r.ID)
		}
	}
}

// rotate starts a new generation when at is more than a window past the current one's
// start. Call it with mu held.
func (x *linkIndex) rotate(at int64) {
	switch {
	case x.start == 0:
		x.start = at
	case at-x.start > 2*x.window:
		x.prev, x.cur, x.start = newLinkGen(), newLinkGen(), at
	case at-x.start > x.window:
		x.prev, x.cur, x.start = x.cur, newLinkGen(), at
	}
}

// open returns the link of connection id's open, if it is still open.
func (x *linkIndex) open(id uint64) (connLink, bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	c, ok := x.conns[id]
	return c, ok
}

// lookup links a connection from addr to name at time at: the latest query in the window
// that returned addresses, else the latest query at all; without one, unlinked, and
// mismatch if the client asked for other names in the window.
func (x *linkIndex) lookup(addr netip.Addr, name string, at time.Time) (uint64, linkFlags) {
	to := at.UnixNano()
	from := to - x.window
	k := clientName{addr, name}
	x.mu.Lock()
	defer x.mu.Unlock()
	gens := [2]*linkGen{&x.cur, &x.prev}
	var answered, any linkRef
	for _, g := range gens {
		nl := g.names[k]
		if nl == nil {
			continue
		}
		if r, ok := nl.answered.latest(from, to); ok && (answered.seq == 0 || newer(r, answered)) {
			answered = r
		}
		if r, ok := nl.any.latest(from, to); ok && (any.seq == 0 || newer(r, any)) {
			any = r
		}
	}
	switch {
	case answered.seq != 0:
		return answered.seq, linkFlags{}
	case any.seq != 0:
		return any.seq, linkFlags{}
	}
	for _, g := range gens {
		cl := g.clients[addr]
		if cl == nil {
			continue
		}
		for _, r := range cl {
			if r.seq != 0 && r.at <= to && r.at >= from && r.name != name {
				return 0, linkFlags{unlinked: true, mismatch: true}
			}
		}
	}
	return 0, linkFlags{unlinked: true}
}

// forgetConns drops the links of connections opened before cutoff whose close never came
// (a close the log refused is never added).
func (x *linkIndex) forgetConns(cutoff time.Time) {
	c := cutoff.UnixNano()
	x.mu.Lock()
	defer x.mu.Unlock()
	for id, l := range x.conns {
		if l.at < c {
			delete(x.conns, id)
		}
	}
}
