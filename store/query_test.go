package store

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/lnm-project/lnm/allowlist"
	"github.com/lnm-project/lnm/audit"
)

func pattern(t testing.TB, s string) *allowlist.Pattern {
	t.Helper()
	p, err := allowlist.ParsePattern(s)
	if err != nil {
		t.Fatal(err)
	}
	return &p
}

// queryFixture holds one record per case the filters tell apart.
func queryFixture(t *testing.T) *Store {
	s := newStore(t, Config{})
	deny := dnsAt(3, 2*time.Second, "10.3.0.8", "evil.example.net", audit.VerdictDeny)
	deny.Rcode = "NXDOMAIN"
	refused := dnsAt(4, 3*time.Second, "10.3.0.8", "x.example.net", audit.VerdictRefused)
	unl := connAt(6, 5*time.Second, "10.3.0.8:4000", "example.org", "direct")
	unl.Flags = []string{audit.FlagUnlinked}
	denied := connAt(7, 6*time.Second, "10.3.0.8:4001", "evil.example.net", "")
	denied.Event, denied.Verdict, denied.Reason = audit.EventDeny, audit.VerdictDeny, "name"
	for _, r := range []audit.Record{
		dnsAt(1, 0, "10.3.0.7", "www.example.com", audit.VerdictAllow),
		dnsAt(2, time.Second, "2001:db8::7", "api.example.com", audit.VerdictWouldDeny),
		deny,
		refused,
		connAt(5, 4*time.Second, "10.3.0.7:4000", "www.example.com", "parent"),
		unl,
		denied,
		connAt(8, 7*time.Second, "10.3.0.7:4002", "", "tcp"),
		{Seq: 9, Time: t0.Add(8 * time.Second), Kind: audit.KindConfig, Change: "reload"},
		{Seq: 10, Time: t0.Add(9 * time.Second), Kind: audit.KindSummary, Client: netip.MustParseAddrPort("10.3.0.8:0"), Verdict: audit.VerdictDeny, Count: 500},
		dnsAt(11, 10*time.Second, "10.3.0.7", "example.com", audit.VerdictAllow),
	} {
		s.Insert(r)
	}
	return s
}

func TestQueryFilters(t *testing.T) {
	s := queryFixture(t)
	tests := []struct {
		name string
		f    audit.Filter
		want []uint64
	}{
		{"everything", audit.Filter{}, []uint64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}},
		{"since", audit.Filter{Since: t0.Add(7 * time.Second)}, []uint64{8, 9, 10, 11}},
		{"until is exclusive", audit.Filter{Until: t0.Add(2 * time.Second)}, []uint64{1, 2}},
		{"since and until", audit.Filter{Since: t0.Add(3 * time.Second), Until: t0.Add(5 * time.Second)}, []uint64{4, 5}},
		{"one client", audit.Filter{Client: netip.MustParsePrefix("10.3.0.7/32")}, []uint64{1, 5, 8, 11}},
		{"a client range", audit.Filter{Client: netip.MustParsePrefix("10.3.0.0/24")}, []uint64{1, 3, 4, 5, 6, 7, 8, 10, 11}},
		{"an odd client range", audit.Filter{Client: netip.MustParsePrefix("10.3.0.8/31")}, []uint64{3, 4, 6, 7, 10}},
		{"an IPv6 client", audit.Filter{Client: netip.MustParsePrefix("2001:db8::/32")}, []uint64{2}},
		{"an IPv6 host", audit.Filter{Client: netip.MustParsePrefix("2001:db8::7/128")}, []uint64{2}},
		{"exact name (dns name and conn SNI)", audit.Filter{Name: pattern(t, "www.example.com")}, []uint64{1, 5}},
		{"wildcard name", audit.Filter{Name: pattern(t, "*.example.com")}, []uint64{1, 2, 5}},
		{"apex name", audit.Filter{Name: pattern(t, ".example.com")}, []uint64{1, 2, 5, 11}},
		{"name that matches nothing", audit.Filter{Name: &allowlist.Pattern{}}, nil},
		{"client and exact name", audit.Filter{Client: netip.MustParsePrefix("10.3.0.7/32"), Name: pattern(t, "www.example.com")}, []uint64{1, 5}},
		{"verdict allow", audit.Filter{Verdict: audit.VerdictAllow}, []uint64{1, 5, 6, 8, 11}},
		{"verdict deny also selects refused", audit.Filter{Verdict: audit.VerdictDeny}, []uint64{3, 4, 7, 10}},
		{"verdict would-deny", audit.Filter{Verdict: audit.VerdictWouldDeny}, []uint64{2}},
		{"kind dns", audit.Filter{Kind: audit.KindDNS}, []uint64{1, 2, 3, 4, 11}},
		{"kind conn", audit.Filter{Kind: audit.KindConn}, []uint64{5, 6, 7, 8}},
		{"kind config", audit.Filter{Kind: audit.KindConfig}, []uint64{9}},
		{"kind summary", audit.Filter{Kind: audit.KindSummary}, []uint64{10}},
		{"unlinked", audit.Filter{Unlinked: true}, []uint64{6}},
		{"limit: the newest, in seq order", audit.Filter{Limit: 3}, []uint64{9, 10, 11}},
		{"limit over an index", audit.Filter{Client: netip.MustParsePrefix("10.3.0.8/32"), Limit: 2}, []uint64{7, 10}},
		{"limit over the deny and refused ranges", audit.Filter{Verdict: audit.VerdictDeny, Limit: 3}, []uint64{4, 7, 10}},
		{"limit larger than the result", audit.Filter{Kind: audit.KindConn, Limit: 100}, []uint64{5, 6, 7, 8}},
		{"everything combined", audit.Filter{Since: t0, Until: t0.Add(time.Hour), Client: netip.MustParsePrefix("10.3.0.0/24"),
			Name: pattern(t, ".example.net"), Verdict: audit.VerdictDeny, Kind: audit.KindConn, Limit: 5}, []uint64{7}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := seqs(s.Query(tt.f)); !slices.Equal(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

// The plan reads an index, not the whole table, whenever the filter allows one. (In the dns
// table the planner is planDNS.)
func TestQueryPlan(t *testing.T) {
	tests := []struct {
		name  string
		f     audit.Filter
		table string
		index string
	}{
		{"client and name", audit.Filter{Client: netip.MustParsePrefix("10.0.0.1/32"), Name: pattern(t, "a.example.com")}, tableDNS, indexClient},
		{"exact name", audit.Filter{Name: pattern(t, "a.example.com"), Since: t0}, tableDNS, indexName},
		{"deny, dns", audit.Filter{Verdict: audit.VerdictDeny}, tableDNS, indexVerdict},
		{"client range, dns", audit.Filter{Client: netip.MustParsePrefix("10.0.0.0/8"), Since: t0}, tableDNS, indexTime},
		{"client and name, conn", audit.Filter{Client: netip.MustParsePrefix("10.0.0.1/32"), Name: pattern(t, "a.example.com")}, tableConn, indexClient},
		{"client, event", audit.Filter{Client: netip.MustParsePrefix("10.0.0.1/32"), Since: t0}, tableEvent, indexTime},
		{"name and time", audit.Filter{Name: pattern(t, "a.example.com"), Since: t0}, tableConn, indexName},
		{"wildcard name and time", audit.Filter{Name: pattern(t, "*.example.com"), Since: t0}, tableConn, indexTime},
		{"name pattern", audit.Filter{Name: pattern(t, "*.example.com")}, tableDNS, indexID},
		{"unlinked", audit.Filter{Unlinked: true, Verdict: audit.VerdictDeny}, tableConn, indexUnlinked},
		{"verdict", audit.Filter{Verdict: audit.VerdictDeny, Since: t0}, tableDNS, indexVerdict},
		{"client range", audit.Filter{Client: netip.MustParsePrefix("10.0.0.0/8"), Since: t0}, tableConn, indexClient},
		{"time", audit.Filter{Until: t0, Verdict: audit.VerdictAllow}, tableEvent, indexTime},
		{"nothing to narrow", audit.Filter{Verdict: audit.VerdictAllow}, tableDNS, indexID},
	}
	sch := schema()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.table == tableDNS {
				if p := planDNS(&tt.f); p.index != tt.index {
					t.Errorf("plan %+v, want index %s", p, tt.index)
				}
				return
			}
			p := plan(sch.Tables[tt.table], &tt.f)
			if len(p.scans) == 0 || p.scans[0].index != tt.index {
				t.Errorf("plan %+v, want index %s", p, tt.index)
			}
		})
	}
}

// randomRecord makes records from small sets of clients, names and verdicts, so that
// filters hit often, with times that wander a little against seq order as they do when
// several goroutines hand records to the log.
func randomRecord(rng *rand.Rand, seq uint64) audit.Record {
	clients := []string{"10.3.0.7", "10.3.0.8", "10.3.1.9", "::ffff:10.3.0.7", "2001:db8::7", "2001:db8:1::1"}
	names := []string{"example.com", "www.example.com", "a.b.example.com", "example.net", "x.example.net", "examplecom.org", ""}
	verdicts := []string{audit.VerdictAllow, audit.VerdictAllow, audit.VerdictDeny, audit.VerdictWouldDeny, audit.VerdictRefused, ""}
	r := audit.Record{
		Seq:     seq,
		Time:    t0.Add(time.Duration(seq)*time.Second + time.Duration(rng.IntN(5000)-2500)*time.Millisecond),
		Verdict: verdicts[rng.IntN(len(verdicts))],
	}
	if rng.IntN(8) > 0 {
		r.Client = netip.AddrPortFrom(netip.MustParseAddr(clients[rng.IntN(len(clients))]), uint16(rng.IntN(3)))
	}
	name := names[rng.IntN(len(names))]
	switch rng.IntN(10) {
	case 0:
		r.Kind = audit.KindConfig
	case 1:
		r.Kind, r.Name, r.Count = audit.KindSummary, name, 10
	case 2, 3, 4, 5:
		r.Kind, r.Name = audit.KindDNS, name
	default:
		r.Kind, r.SNI, r.ID = audit.KindConn, name, uint64(rng.IntN(50))
		r.Event = []string{audit.EventOpen, audit.EventClose, audit.EventDeny}[rng.IntN(3)]
	}
	if rng.IntN(4) == 0 {
		r.Flags = []string{audit.FlagUnlinked}
	}
	return r
}

func randomFilter(rng *rand.Rand) audit.Filter {
	var f audit.Filter
	if rng.IntN(3) == 0 {
		f.Since = t0.Add(time.Duration(rng.IntN(300)) * time.Second)
	}
	if rng.IntN(3) == 0 {
		f.Until = t0.Add(time.Duration(rng.IntN(300)) * time.Second)
	}
	if rng.IntN(2) == 0 {
		f.Client = []netip.Prefix{
			netip.MustParsePrefix("10.3.0.7/32"), netip.MustParsePrefix("10.3.0.0/24"),
			netip.MustParsePrefix("10.3.0.0/23"), netip.MustParsePrefix("10.0.0.0/8"),
			netip.MustParsePrefix("2001:db8::7/128"), netip.MustParsePrefix("2001:db8::/32"),
			netip.MustParsePrefix("::ffff:10.3.0.7/128"), netip.MustParsePrefix("10.3.0.6/31"),
		}[rng.IntN(8)]
	}
	if rng.IntN(2) == 0 {
		p, _ := allowlist.ParsePattern([]string{"example.com", "*.example.com", ".example.com", ".example.net", "www.example.com", "x.example.net"}[rng.IntN(6)])
		f.Name = &p
	}
	if rng.IntN(3) == 0 {
		f.Verdict = []string{audit.VerdictAllow, audit.VerdictDeny, audit.VerdictWouldDeny, audit.VerdictRefused}[rng.IntN(4)]
	}
	if rng.IntN(3) == 0 {
		f.Kind = []audit.Kind{audit.KindDNS, audit.KindConn, audit.KindConfig, audit.KindSummary}[rng.IntN(4)]
	}
	f.Unlinked = rng.IntN(5) == 0
	if rng.IntN(2) == 0 {
		f.Limit = 1 + rng.IntN(20)
	}
	return f
}

// bruteForce is what Query must return: every record through Match, seq order, the newest
// Limit.
func bruteForce(all []audit.Record, f audit.Filter) []uint64 {
	var out []uint64
	for i := range all {
		if f.Match(&all[i]) {
			out = append(out, all[i].Seq)
		}
	}
	slices.Sort(out)
	if f.Limit > 0 && len(out) > f.Limit {
		out = out[len(out)-f.Limit:]
	}
	return out
}

func TestQueryMatchesBruteForce(t *testing.T) {
	for seed := range uint64(5) {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 1))
			s := newStore(t, Config{})
			var all []audit.Record
			// Insert in shuffled seq order: the store must not depend on arrival order.
			perm := rng.Perm(300)
			for _, i := range perm {
				r := randomRecord(rng, uint64(i+1))
				all = append(all, r)
				s.Insert(r)
			}
			for range 2000 {
				f := randomFilter(rng)
				want := bruteForce(all, f)
				if got := seqs(s.Query(f)); !slices.Equal(got, want) {
					t.Fatalf("filter %+v (name %v):\ngot  %v\nwant %v", f, f.Name, got, want)
				}
			}
		})
	}
}
