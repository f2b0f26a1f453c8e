package resolver

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lnm-project/lnm/allowlist"
	"github.com/miekg/dns"
)

// zoneData is a tiny authoritative data set for a stub upstream: records by lower-case owner.
type zoneData map[string][]dns.RR

func rrs(t testing.TB, lines ...string) zoneData {
	t.Helper()
	z := zoneData{}
	for _, l := range lines {
		rr, err := dns.NewRR(l)
		if err != nil {
			t.Fatal(err)
		}
		owner := strings.ToLower(rr.Header().Name)
		z[owner] = append(z[owner], rr)
	}
	return z
}

// serve answers like a recursive resolver would: it follows CNAMEs within its data when
// chase is set, NXDOMAIN with an SOA for unknown names, NODATA with an SOA for missing types.
func (z zoneData) serve(chase bool, delay time.Duration) func(w dns.ResponseWriter, req *dns.Msg, tcp bool) {
	return func(w dns.ResponseWriter, req *dns.Msg, _ bool) {
		time.Sleep(delay)
		m := new(dns.Msg)
		m.SetReply(req)
		q := req.Question[0]
		name := strings.ToLower(q.Name)
		soa, _ := dns.NewRR("test. 300 IN SOA ns.test. h.test. 1 2 3 4 20")
		for range maxChain {
			rs, ok := z[name]
			if !ok {
				if len(m.Answer) == 0 {
					m.Rcode = dns.RcodeNameError
				}
				m.Ns = []dns.RR{soa}
				break
			}
			next, found := "", false
			for _, rr := range rs {
				if rr.Header().Rrtype == q.Qtype {
					m.Answer = append(m.Answer, rr)
					found = true
				}
				if c, ok := rr.(*dns.CNAME); ok {
					m.Answer = append(m.Answer, rr)
					next = strings.ToLower(c.Target)
				}
			}
			if next == "" || !chase {
				if !found && next == "" {
					m.Ns = []dns.RR{soa} // NODATA at the end of the chain
				}
				break
			}
			name = next
		}
		w.WriteMsg(m)
	}
}

func sortedAddrs(a []netip.Addr) []string {
	var s []string
	for _, x := range a {
		s = append(s, x.String())
	}
	slices.Sort(s)
	return s
}

func TestUpstreamLookup(t *testing.T) {
	data := rrs(t,
		"api.example.com. 300 IN A 198.18.0.10",
		"api.example.com. 200 IN AAAA 2001:db8::10",
		"www.example.com. 100 IN CNAME edge.cdn.test.",
		"edge.cdn.test. 50 IN CNAME e1.cdn.test.",
		"e1.cdn.test. 400 IN A 198.18.0.20",
		"v4only.example.com. 300 IN A 198.18.0.30",
	)
	up := startPlantDNS(t, data.serve(true, 0))
	u := NewUpstream(UpstreamConfig{Servers: []netip.AddrPort{up.addr}, Timeout: 2 * time.Second})
	now := time.Unix(1_700_000_000, 0)
	u.now = func() time.Time { return now }
	ctx := context.Background()

	tests := []struct {
		name    allowlist.Name
		want    []string
		queries int // at the stub for the first lookup
		ttl     time.Duration
	}{
		{"api.example.com", []string{"198.18.0.10", "2001:db8::10"}, 2, 200 * time.Second},
		{"www.example.com", []string{"198.18.0.20"}, 2, 20 * time.Second}, // AAAA NODATA: SOA min 20
		{"v4only.example.com", []string{"198.18.0.30"}, 2, 20 * time.Second},
	}
	for _, tc := range tests {
		t.Run(string(tc.name), func(t *testing.T) {
			before := up.queries()
			got, err := u.Lookup(ctx, tc.name)
			if err != nil || !slices.Equal(sortedAddrs(got), tc.want) {
				t.Fatalf("Lookup = %v, %v; want %v", got, err, tc.want)
			}
			if n := up.queries() - before; n != tc.queries {
				t.Errorf("%d queries, want %d", n, tc.queries)
			}
			got[0] = netip.Addr{} // the caller's copy
			before = up.queries()
			again, err := u.Lookup(ctx, tc.name)
			if err != nil || !slices.Equal(sortedAddrs(again), tc.want) || up.queries() != before {
				t.Errorf("cached Lookup = %v, %v after %d more queries", again, err, up.queries()-before)
			}
			u.mu.Lock()
			exp := u.cache[tc.name].expires.Sub(now)
			u.mu.Unlock()
			if exp != tc.ttl {
				t.Errorf("cached for %s, want %s", exp, tc.ttl)
			}
		})
	}

	// Past the TTL the name is asked again.
	before := up.queries()
	now = now.Add(201 * time.Second)
	if _, err := u.Lookup(ctx, "api.example.com"); err != nil || up.queries()-before != 2 {
		t.Errorf("after expiry: err %v, %d queries, want 2", err, up.queries()-before)
	}
}

func TestUpstreamNegative(t *testing.T) {
	up := startPlantDNS(t, rrs(t, "noaddr.example.com. 300 IN TXT \"x\"").serve(true, 0))
	u := NewUpstream(UpstreamConfig{Servers: []netip.AddrPort{up.addr}, Timeout: 2 * time.Second, NegativeTTL: 10 * time.Second})
	now := time.Unix(1_700_000_000, 0)
	u.now = func() time.Time { return now }
	for _, name := range []allowlist.Name{"nx.example.com", "noaddr.example.com"} {
		before := up.queries()
		_, err := u.Lookup(context.Background(), name)
		if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), string(name)) {
			t.Errorf("%s: err %v, want ErrNotFound naming the name", name, err)
		}
		_, err2 := u.Lookup(context.Background(), name)
		if up.queries()-before != 2 || !errors.Is(err2, ErrNotFound) {
			t.Errorf("%s: %d queries for two lookups, want 2 (negative answer cached)", name, up.queries()-before)
		}
		u.mu.Lock()
		exp := u.cache[name].expires.Sub(now)
		u.mu.Unlock()
		if exp != 10*time.Second { // the SOA says 20s, NegativeTTL caps it
			t.Errorf("%s: negative answer cached for %s, want 10s", name, exp)
		}
	}
}

// TestUpstreamCNAMEAcrossQueries: an authoritative server that does not chase the CNAME
// leaves the chain open; the client asks for the target.
func TestUpstreamCNAMEAcrossQueries(t *testing.T) {
	up := startPlantDNS(t, rrs(t,
		"alias.plant.internal. 60 IN CNAME real.plant.internal.",
		"real.plant.internal. 60 IN A 10.30.0.5",
	).serve(false, 0))
	u := NewUpstream(UpstreamConfig{Zones: []Zone{{Name: "plant.internal", Servers: []netip.AddrPort{up.addr}}}})
	got, err := u.Lookup(context.Background(), "alias.plant.internal")
	if err != nil || !slices.Equal(sortedAddrs(got), []string{"10.30.0.5"}) {
		t.Fatalf("Lookup = %v, %v", got, err)
	}
	if n := up.queries(); n != 4 { // A and AAAA for the alias, then for the target
		t.Errorf("%d queries, want 4", n)
	}
}

func TestUpstreamCNAMELoop(t *testing.T) {
	up := startPlantDNS(t, rrs(t,
		"a.loop.test. 60 IN CNAME b.loop.test.",
		"b.loop.test. 60 IN CNAME a.loop.test.",
	).serve(false, 0))
	u := NewUpstream(UpstreamConfig{Servers: []netip.AddrPort{up.addr}})
	_, err := u.Lookup(context.Background(), "a.loop.test")
	if err == nil || errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "CNAME") {
		t.Errorf("loop: %v, want a CNAME error", err)
	}
}

func TestUpstreamTimeoutThenNextServer(t *testing.T) {
	up := startPlantDNS(t, rrs(t, "api.example.com. 60 IN A 198.18.0.10").serve(true, 0))
	dead := deadServer(t)
	u := NewUpstream(UpstreamConfig{Servers: []netip.AddrPort{dead, up.addr}, Timeout: 600 * time.Millisecond})
	t0 := time.Now()
	got, err := u.Lookup(context.Background(), "api.example.com")
	if err != nil || !slices.Equal(sortedAddrs(got), []string{"198.18.0.10"}) {
		t.Fatalf("Lookup = %v, %v", got, err)
	}
	if d := time.Since(t0); d < 300*time.Millisecond || d > 600*time.Millisecond {
		t.Errorf("took %s, want the dead server's share of the timeout (300ms) and no more than all of it", d)
	}

	only := NewUpstream(UpstreamConfig{Servers: []netip.AddrPort{dead}, Timeout: 400 * time.Millisecond})
	_, err = only.Lookup(context.Background(), "api.example.com")
	if err == nil || !strings.Contains(err.Error(), dead.String()) || !strings.Contains(err.Error(), "timeout") {
		t.Errorf("dead server: %v, want a timeout naming %s", err, dead)
	}
}

func TestUpstreamServerFailureTriesNext(t *testing.T) {
	refuser := startPlantDNS(t, func(w dns.ResponseWriter, req *dns.Msg, _ bool) {
		m := new(dns.Msg)
		w.WriteMsg(m.SetRcode(req, dns.RcodeRefused))
	})
	up := startPlantDNS(t, rrs(t, "api.example.com. 60 IN A 198.18.0.10").serve(true, 0))
	u := NewUpstream(UpstreamConfig{Servers: []netip.AddrPort{refuser.addr, up.addr}})
	if got, err := u.Lookup(context.Background(), "api.example.com"); err != nil || len(got) != 1 {
		t.Errorf("Lookup = %v, %v", got, err)
	}
	alone := NewUpstream(UpstreamConfig{Servers: []netip.AddrPort{refuser.addr}})
	before := refuser.queries()
	_, err := alone.Lookup(context.Background(), "api.example.com")
	if err == nil || !strings.Contains(err.Error(), "REFUSED") || !strings.Contains(err.Error(), refuser.addr.String()) {
		t.Errorf("refusing server: %v", err)
	}
	if _, err := alone.Lookup(context.Background(), "api.example.com"); refuser.queries()-before != 8 {
		t.Errorf("errors were cached: %d queries after two lookups, want 8 (2 types × 2 tries × 2), err %v", refuser.queries()-before, err)
	}
}

func TestUpstreamZoneRouting(t *testing.T) {
	public := startPlantDNS(t, rrs(t, "broker.plant.internal. 60 IN A 198.18.9.9").serve(true, 0))
	plant := startPlantDNS(t, rrs(t, "broker.plant.internal. 60 IN A 10.30.0.7").serve(true, 0))
	u := NewUpstream(UpstreamConfig{
		Servers: []netip.AddrPort{public.addr},
		Zones:   []Zone{{Name: "plant.internal", Servers: []netip.AddrPort{plant.addr}}},
	})
	got, err := u.Lookup(context.Background(), "broker.plant.internal")
	if err != nil || !slices.Equal(sortedAddrs(got), []string{"10.30.0.7"}) || public.queries() != 0 {
		t.Errorf("Lookup = %v, %v; %d queries at the public resolver", got, err, public.queries())
	}
}

func TestUpstreamSharesConcurrentLookups(t *testing.T) {
	up := startPlantDNS(t, rrs(t, "api.example.com. 60 IN A 198.18.0.10").serve(true, 100*time.Millisecond))
	u := NewUpstream(UpstreamConfig{Servers: []netip.AddrPort{up.addr}})
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			if got, err := u.Lookup(context.Background(), "api.example.com"); err != nil || len(got) != 1 {
				t.Errorf("Lookup = %v, %v", got, err)
			}
		})
	}
	wg.Wait()
	if n := up.queries(); n != 2 {
		t.Errorf("%d queries for 20 concurrent lookups, want 2", n)
	}

	// A caller that gives up does not cancel the shared query.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if _, err := u.Lookup(ctx, "slow.example.com"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("impatient caller: %v", err)
	}
	if _, err := u.Lookup(context.Background(), "slow.example.com"); !errors.Is(err, ErrNotFound) {
		t.Errorf("patient caller: %v, want the shared NXDOMAIN", err)
	}
}

func TestServersFromResolvConf(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "resolv.conf")
	os.WriteFile(path, []byte("# generated\nsearch plant.internal\nnameserver 127.0.0.53\nnameserver ::1\n; nameserver 9.9.9.9\noptions edns0\nnameserver fe80::1%lo\n"), 0o600)
	got, err := ServersFromResolvConf(path)
	want := []netip.AddrPort{
		netip.MustParseAddrPort("127.0.0.53:53"),
		netip.MustParseAddrPort("[::1]:53"),
		netip.MustParseAddrPort("[fe80::1%lo]:53"),
	}
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("got %v, %v; want %v", got, err, want)
	}
	os.WriteFile(path, []byte("search x\n"), 0o600)
	if _, err := ServersFromResolvConf(path); err == nil || !strings.Contains(err.Error(), "no nameserver") {
		t.Errorf("no nameserver: %v", err)
	}
	os.WriteFile(path, []byte("nameserver dns.example\n"), 0o600)
	if _, err := ServersFromResolvConf(path); err == nil || !strings.Contains(err.Error(), ":1:") {
		t.Errorf("bad address: %v, want file:line", err)
	}
	if _, err := ServersFromResolvConf(filepath.Join(dir, "missing")); err == nil {
		t.Error("missing file: no error")
	}
}
