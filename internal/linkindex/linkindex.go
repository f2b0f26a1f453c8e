// Package linkindex is the store's index for linking a connection to the DNS query it
// follows: for each client and name its latest queries, for each client its latest query of
// any name, for each open connection its link. Every operation is a map access under one
// short lock, so linking costs no memdb read and sees queries memdb has not inserted yet.
package linkindex

import (
	"net/netip"
	"sync"
	"time"

	"github.com/lnm-project/lnm/audit"
)

// Index is what store.Link reads: for each client and name, the latest queries; for each
// client, its latest queries of any name; for each open connection, its link. Add writes it
// before the record is queued, so a connection that follows its answer by a millisecond
// links although memdb has not inserted the query yet, and every operation is a map access
// under one short lock.
//
// Queries live in two generations of maps. A generation starts with the first query more
// than a window after the current one started; starting one drops the one before, whose
// queries were all more than a window old by then. So a query is kept at least a window
// and at most two, without a sweep.
type Index struct {
	window int64 // nanoseconds

	mu    sync.Mutex
	start int64 // the current generation's first query time
	cur   linkGen
	prev  linkGen
	conns map[uint64]Link // open connections by id, until their close is added
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
// Link is an open connection's link: the query it followed (0: none) and its flags.
type Link struct {
	Seq   uint64
	Flags Flags
	at    int64 // the open's time, for ForgetConns
}

// Flags are the findings linking makes: no query for the name, and other names asked.
type Flags struct{ Unlinked, Mismatch bool }

// New returns an empty index that keeps queries at least window.
func New(window time.Duration) *Index {
	return &Index{window: int64(window), cur: newLinkGen(), prev: newLinkGen(), conns: map[uint64]Link{}}
}

// Add notes what r tells linking: a dns query, a connection's open (its link) or its close
// (forget the link). Records without a time or a client are no use to linking.
func (x *Index) Add(r *audit.Record) {
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
		if r.ID == 0 || !Linkable(r) {
			return
		}
		x.mu.Lock()
		defer x.mu.Unlock()
		switch r.Event {
		case audit.EventOpen:
			x.conns[r.ID] = Link{
				Seq:   r.QuerySeq,
				Flags: Flags{Unlinked: r.HasFlag(audit.FlagUnlinked), Mismatch: r.HasFlag(audit.FlagSNIMismatch)},
				at:    at,
			}
		case audit.EventClose:
			delete(x.conns, r.ID)
		}
	}
}

// rotate starts a new generation when at is more than a window past the current one's
// start. Call it with mu held.
func (x *Index) rotate(at int64) {
	switch {
	case x.start == 0:
		x.start = at
	case at-x.start > 2*x.window:
		x.prev, x.cur, x.start = newLinkGen(), newLinkGen(), at
	case at-x.start > x.window:
		x.prev, x.cur, x.start = x.cur, newLinkGen(), at
	}
}

// Open returns the link of connection id's open, if it is still open.
func (x *Index) Open(id uint64) (Link, bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	c, ok := x.conns[id]
	return c, ok
}

// Lookup links a connection from addr to name at time at: the latest query in the window
// that returned addresses, else the latest query at all; without one, unlinked, and
// mismatch if the client asked for other names in the window.
func (x *Index) Lookup(addr netip.Addr, name string, at time.Time) (uint64, Flags) {
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
		return answered.seq, Flags{}
	case any.seq != 0:
		return any.seq, Flags{}
	}
	for _, g := range gens {
		cl := g.clients[addr]
		if cl == nil {
			continue
		}
		for _, r := range cl {
			if r.seq != 0 && r.at <= to && r.at >= from && r.name != name {
				return 0, Flags{Unlinked: true, Mismatch: true}
			}
		}
	}
	return 0, Flags{Unlinked: true}
}

// ForgetConns drops the links of connections opened before cutoff whose close never came
// (a close the log refused is never added).
func (x *Index) ForgetConns(cutoff time.Time) {
	c := cutoff.UnixNano()
	x.mu.Lock()
	defer x.mu.Unlock()
	for id, l := range x.conns {
		if l.at < c {
			delete(x.conns, id)
		}
	}
}

// Holds reports whether the index still holds a query from addr for name (tests, diagnostics).
func (x *Index) Holds(addr netip.Addr, name string) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	k := clientName{addr, name}
	return x.cur.names[k] != nil || x.prev.names[k] != nil
}

// Linkable reports whether a conn record is one Link ties to a query: it named a host, did
// not come through a static tcp route, and has a client.
func Linkable(r *audit.Record) bool {
	return r.SNI != "" && r.Via != "tcp" && r.Client.IsValid()
}
