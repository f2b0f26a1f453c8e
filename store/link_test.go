package store

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/lnm-project/lnm/allowlist"
	"github.com/lnm-project/lnm/audit"
)

// linked is what Link should have written into a conn record.
type linked struct {
	querySeq uint64
	flags    []string
}

var (
	unlinked = []string{audit.FlagUnlinked}
	mismatch = []string{audit.FlagUnlinked, audit.FlagSNIMismatch}
)

func mustName(t *testing.T, s string) string {
	t.Helper()
	n, err := allowlist.ParseName(s)
	if err != nil {
		t.Fatal(err)
	}
	return string(n)
}

func TestLink(t *testing.T) {
	const (
		dev   = "10.3.0.7"
		devC  = "10.3.0.7:50000"
		other = "10.3.0.8"
		www   = "www.example.com"
		api   = "api.example.com"
		allow = audit.VerdictAllow
	)
	close := func(r audit.Record, off time.Duration, id uint64, dur time.Duration) audit.Record {
		r.Seq += 100
		r.Time = t0.Add(off)
		r.Event = audit.EventClose
		r.ID = id
		r.DurationMS = dur.Milliseconds()
		return r
	}
	tests := []struct {
		name    string
		queries []audit.Record
		conns   []audit.Record // linked and inserted in order
		want    []linked       // one per conn
	}{
		{
			name: "same client and name within window links to the latest such query",
			queries: []audit.Record{
				dnsAt(1, -5*time.Minute, dev, www, allow),
				dnsAt(2, -2*time.Minute, dev, www, allow),
				dnsAt(3, -1*time.Minute, dev, api, allow),
			},
			conns: []audit.Record{connAt(10, 0, devC, www, "parent")},
			want:  []linked{{querySeq: 2}},
		},
		{
			name: "a query after the connection is not the one it follows",
			queries: []audit.Record{
				dnsAt(1, -3*time.Minute, dev, www, allow),
				dnsAt(2, time.Second, dev, www, allow),
			},
			conns: []audit.Record{connAt(10, 0, devC, www, "parent")},
			want:  []linked{{querySeq: 1}},
		},
		{
			name:    "a query at the same instant links",
			queries: []audit.Record{dnsAt(1, 0, dev, www, allow)},
			conns:   []audit.Record{connAt(10, 0, devC, www, "parent")},
			want:    []linked{{querySeq: 1}},
		},
		{
			name:    "a query exactly one window before links",
			queries: []audit.Record{dnsAt(1, -DefaultLinkWindow, dev, www, allow)},
			conns:   []audit.Record{connAt(10, 0, devC, www, "parent")},
			want:    []linked{{querySeq: 1}},
		},
		{
			name:    "outside the window: unlinked, and no mismatch for the same name",
			queries: []audit.Record{dnsAt(1, -DefaultLinkWindow-time.Millisecond, dev, www, allow)},
			conns:   []audit.Record{connAt(10, 0, devC, www, "parent")},
			want:    []linked{{flags: unlinked}},
		},
		{
			name:    "two connections reusing one cached answer within its TTL link to the same query",
			queries: []audit.Record{dnsAt(1, -4*time.Minute, dev, www, allow)},
			conns: []audit.Record{
				connAt(10, -3*time.Minute, devC, www, "parent"),
				connAt(11, 0, "10.3.0.7:50001", www, "parent"),
			},
			want: []linked{{querySeq: 1}, {querySeq: 1}},
		},
		{
			name:  "unlinked when there is no query at all",
			conns: []audit.Record{connAt(10, 0, devC, www, "direct")},
			want:  []linked{{flags: unlinked}},
		},
		{
			name: "sni_mismatch when the client queried other names in the window",
			queries: []audit.Record{
				dnsAt(1, -time.Minute, dev, api, allow),
				dnsAt(2, -20*time.Minute, dev, www, allow),
			},
			conns: []audit.Record{connAt(10, 0, devC, www, "parent")},
			want:  []linked{{flags: mismatch}},
		},
		{
			name:    "queries for other names outside the window are no mismatch",
			queries: []audit.Record{dnsAt(1, -DefaultLinkWindow-time.Second, dev, api, allow)},
			conns:   []audit.Record{connAt(10, 0, devC, www, "parent")},
			want:    []linked{{flags: unlinked}},
		},
		{
			name:    "a tcp route connection is linked to nothing and not flagged",
			queries: []audit.Record{dnsAt(1, -time.Minute, dev, api, allow)},
			conns:   []audit.Record{connAt(10, 0, devC, "", "tcp")},
			want:    []linked{{}},
		},
		{
			name:    "a tcp route is never linked, even with a name",
			queries: []audit.Record{dnsAt(1, -time.Minute, dev, www, allow)},
			conns:   []audit.Record{connAt(10, 0, devC, www, "tcp")},
			want:    []linked{{}},
		},
		{
			name:    "a different client's query does not link",
			queries: []audit.Record{dnsAt(1, -time.Minute, other, www, allow)},
			conns:   []audit.Record{connAt(10, 0, devC, www, "parent")},
			want:    []linked{{flags: unlinked}},
		},
		{
			name: "an answered query is preferred to a later denied one, which is the fallback",
			queries: []audit.Record{
				dnsAt(1, -5*time.Minute, dev, www, allow),
				denied(2, -time.Minute, dev, www),
			},
			conns: []audit.Record{
				connAt(10, 0, devC, www, "parent"),
				connAt(11, 6*time.Minute, devC, www, "parent"),
			},
			want: []linked{{querySeq: 1}, {querySeq: 2}},
		},
		{
			name: "A and AAAA: the connection links to the query that returned addresses",
			queries: []audit.Record{
				dnsAt(1, -2*time.Millisecond, dev, www, allow),
				nodata(2, -time.Millisecond, dev, www),
			},
			conns: []audit.Record{connAt(10, 0, devC, www, "parent")},
			want:  []linked{{querySeq: 1}},
		},
		{
			name: "AAAA answered after an empty A links to the AAAA",
			queries: []audit.Record{
				nodata(1, -2*time.Millisecond, dev, www),
				func() audit.Record {
					r := dnsAt(2, -time.Millisecond, dev, www, allow)
					r.QType, r.Answer = "AAAA", []netip.Addr{netip.MustParseAddr("fd00::1")}
					return r
				}(),
			},
			conns: []audit.Record{connAt(10, 0, devC, www, "parent")},
			want:  []linked{{querySeq: 2}},
		},
		{
			name:    "a query without addresses links when there is no other",
			queries: []audit.Record{nodata(1, -time.Second, dev, www)},
			conns:   []audit.Record{connAt(10, 0, devC, www, "parent")},
			want:    []linked{{querySeq: 1}},
		},
		{
			name: "a denied connection links to its NXDOMAIN query",
			queries: []audit.Record{
				dnsAt(1, -time.Minute, dev, api, allow),
				denied(2, -time.Second, dev, www),
			},
			conns: []audit.Record{func() audit.Record {
				c := connAt(10, 0, devC, www, "")
				c.Event, c.Verdict, c.Reason = audit.EventDeny, audit.VerdictDeny, "name"
				return c
			}()},
			want: []linked{{querySeq: 2}},
		},
		{
			name: "an answered query outside the window loses to an empty one inside it",
			queries: []audit.Record{
				dnsAt(1, -DefaultLinkWindow-time.Second, dev, www, allow),
				nodata(2, -time.Minute, dev, www),
			},
			conns: []audit.Record{connAt(10, 0, devC, www, "parent")},
			want:  []linked{{querySeq: 2}},
		},
		{
			name:    "a would-deny query (learn mode) links",
			queries: []audit.Record{dnsAt(1, -time.Minute, dev, www, audit.VerdictWouldDeny)},
			conns:   []audit.Record{connAt(10, 0, devC, www, "direct")},
			want:    []linked{{querySeq: 1}},
		},
		{
			name:    "an IPv4-mapped client address is the same client",
			queries: []audit.Record{dnsAt(1, -time.Minute, dev, www, allow)},
			conns:   []audit.Record{connAt(10, 0, "[::ffff:10.3.0.7]:50000", www, "parent")},
			want:    []linked{{querySeq: 1}},
		},
		{
			name:    "IPv6 clients link",
			queries: []audit.Record{dnsAt(1, -time.Minute, "2001:db8::7", www, allow)},
			conns:   []audit.Record{connAt(10, 0, "[2001:db8::7]:50000", www, "parent")},
			want:    []linked{{querySeq: 1}},
		},
		{
			name: "close reuses open's link although a newer query came in between",
			queries: []audit.Record{
				dnsAt(1, -time.Minute, dev, www, allow),
				dnsAt(2, time.Minute, dev, www, allow),
			},
			conns: []audit.Record{
				connAt(10, 0, devC, www, "parent"),
				close(connAt(10, 0, devC, www, "parent"), 2*time.Minute, 10, 2*time.Minute),
			},
			want: []linked{{querySeq: 1}, {querySeq: 1}},
		},
		{
			name:    "close of an unlinked open stays unlinked although a query came in between",
			queries: []audit.Record{dnsAt(1, time.Minute, dev, www, allow)},
			conns: []audit.Record{
				connAt(10, 0, devC, www, "parent"),
				close(connAt(10, 0, devC, www, "parent"), 2*time.Minute, 10, 2*time.Minute),
			},
			want: []linked{{flags: unlinked}, {flags: unlinked}},
		},
		{
			name:    "close whose open is not held links as of the connection's start",
			queries: []audit.Record{dnsAt(1, -time.Minute, dev, www, allow)},
			conns: []audit.Record{
				close(connAt(10, 0, devC, www, "parent"), 30*time.Minute+30*time.Second, 77, 30*time.Minute),
			},
			want: []linked{{querySeq: 1}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t, Config{Now: newClock().Now})
			for _, q := range tt.queries {
				add(s, q) // not Insert: linking must not wait for the writer
			}
			for i, c := range tt.conns {
				s.Link(&c)
				got := linked{querySeq: c.QuerySeq, flags: c.Flags}
				if got.querySeq != tt.want[i].querySeq || !slices.Equal(got.flags, tt.want[i].flags) {
					t.Errorf("conn %d (seq %d): got query_seq %d flags %v, want %d %v",
						i, c.Seq, got.querySeq, got.flags, tt.want[i].querySeq, tt.want[i].flags)
				}
				add(s, c)
			}
		})
	}
}

// denied is a query the list refused: NXDOMAIN, no answer.
func denied(seq uint64, off time.Duration, client, name string) audit.Record {
	r := dnsAt(seq, off, client, name, audit.VerdictDeny)
	r.Rcode, r.Answer = "NXDOMAIN", nil
	return r
}

// nodata is an allowed AAAA query that the box answered without addresses (it has no IPv6
// address to give).
func nodata(seq uint64, off time.Duration, client, name string) audit.Record {
	r := dnsAt(seq, off, client, name, audit.VerdictAllow)
	r.QType, r.Answer = "AAAA", nil
	return r
}

// A connection that follows its answer at once links although the writer has not
// inserted the query: Link reads the link index, which Add updates before queueing.
func TestLinkBeforeInsert(t *testing.T) {
	s := newStore(t, Config{})
	add(s, dnsAt(1, -time.Millisecond, "10.3.0.7", "www.example.com", audit.VerdictAllow))
	if st := s.Stats(); st.Records() != 0 || st.Queued != 1 {
		t.Fatalf("the query is not waiting in the queue: %+v", st)
	}
	c := connAt(2, 0, "10.3.0.7:4000", "www.example.com", "parent")
	s.Link(&c)
	if c.QuerySeq != 1 || c.Flags != nil {
		t.Errorf("got query_seq %d flags %v, want 1 and none", c.QuerySeq, c.Flags)
	}
	// So does a close whose open is still queued.
	add(s, c)
	cl := c
	cl.Seq, cl.Event, cl.QuerySeq, cl.Time = 3, audit.EventClose, 0, t0.Add(time.Minute)
	add(s, dnsAt(4, 30*time.Second, "10.3.0.7", "www.example.com", audit.VerdictAllow))
	s.Link(&cl)
	if cl.QuerySeq != 1 {
		t.Errorf("close: query_seq %d, want its open's 1", cl.QuerySeq)
	}
}

// The link index keeps a query at least one window: generations rotate as queries arrive,
// and a query a window old is still found while one older is not.
func TestLinkIndexGenerations(t *testing.T) {
	const w = time.Minute
	s := newStore(t, Config{LinkWindow: w})
	add(s, dnsAt(1, 0, "10.3.0.7", "www.example.com", audit.VerdictAllow))
	// Other clients' queries move time along and rotate the generations.
	for i := range 10 {
		off := time.Duration(i+1) * w / 4
		add(s, dnsAt(uint64(i+2), off, "10.3.0.9", "api.example.com", audit.VerdictAllow))
		c := connAt(100, off, "10.3.0.7:4000", "www.example.com", "parent")
		s.Link(&c)
		want := uint64(1)
		if off > w {
			want = 0
		}
		if c.QuerySeq != want {
			t.Errorf("at +%v: query_seq %d, want %d", off, c.QuerySeq, want)
		}
	}
	if s.links.Holds(netip.MustParseAddr("10.3.0.7"), "www.example.com") {
		t.Error("after 2.5 windows the index still holds the first query")
	}
}

// Names arrive normalized (allowlist.ParseName on the DNS question and on the SNI), so the
// store compares them as bytes; case and a trailing dot never reach it.
func TestLinkNormalizedNames(t *testing.T) {
	s := newStore(t, Config{})
	s.Insert(dnsAt(1, -time.Minute, "10.3.0.7", mustName(t, "WWW.Example.COM."), audit.VerdictAllow))
	c := connAt(2, 0, "10.3.0.7:4000", mustName(t, "www.example.com"), "parent")
	s.Link(&c)
	if c.QuerySeq != 1 || c.Flags != nil {
		t.Errorf("got query_seq %d flags %v, want 1 and none", c.QuerySeq, c.Flags)
	}
}

func TestLinkWindowConfig(t *testing.T) {
	s := newStore(t, Config{LinkWindow: time.Minute})
	s.Insert(dnsAt(1, -2*time.Minute, "10.3.0.7", "www.example.com", audit.VerdictAllow))
	c := connAt(2, 0, "10.3.0.7:4000", "www.example.com", "parent")
	s.Link(&c)
	if c.QuerySeq != 0 || !slices.Equal(c.Flags, unlinked) {
		t.Errorf("a 1m window linked a query 2m old: query_seq %d flags %v", c.QuerySeq, c.Flags)
	}
}

// Linking twice gives the same answer, keeps flags Link does not own, and never writes into
// a flags array that a held record shares.
func TestLinkRelinkKeepsOtherFlags(t *testing.T) {
	s := newStore(t, Config{})
	c := connAt(2, 0, "10.3.0.7:4000", "www.example.com", "parent")
	c.Flags = make([]string, 1, 4)
	c.Flags[0] = "learn"
	s.Link(&c)
	s.Insert(c)
	want := []string{"learn", audit.FlagUnlinked}
	if !slices.Equal(c.Flags, want) {
		t.Fatalf("flags %v, want %v", c.Flags, want)
	}
	s.Insert(dnsAt(1, -time.Minute, "10.3.0.7", "www.example.com", audit.VerdictAllow))
	again := c
	again.Seq = 3
	s.Link(&again)
	if again.QuerySeq != 1 || !slices.Equal(again.Flags, []string{"learn"}) {
		t.Errorf("relink: query_seq %d flags %v, want 1 [learn]", again.QuerySeq, again.Flags)
	}
	held, _ := s.Get(2)
	if !slices.Equal(held.Flags, want) {
		t.Errorf("held record's flags changed to %v", held.Flags)
	}
}

func TestLinkIgnoresOtherKinds(t *testing.T) {
	s := newStore(t, Config{})
	r := dnsAt(1, 0, "10.3.0.7", "www.example.com", audit.VerdictAllow)
	s.Link(&r)
	if r.QuerySeq != 0 || r.Flags != nil {
		t.Errorf("a dns record was linked: %d %v", r.QuerySeq, r.Flags)
	}
}

func TestLinkConnectNotFlagged(t *testing.T) {
	s := newStore(t, Config{})
	q := dnsAt(1, 0, "10.3.0.7", "other.example.com", audit.VerdictAllow)
	s.Add(&q)
	r := connAt(2, time.Second, "10.3.0.7:40000", "www.example.com", "direct")
	r.Proto = audit.ProtoConnect
	s.Link(&r)
	if r.QuerySeq != 0 || r.Flags != nil {
		t.Errorf("a CONNECT without its query: seq %d flags %v, want neither", r.QuerySeq, r.Flags)
	}
	r.Proto = ""
	s.Link(&r)
	if !r.HasFlag(audit.FlagUnlinked) || !r.HasFlag(audit.FlagSNIMismatch) {
		t.Errorf("a TLS connection without its query: flags %v, want unlinked and sni_mismatch", r.Flags)
	}
}
