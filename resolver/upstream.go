package resolver

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/lnm-project/lnm/allowlist"
	"github.com/miekg/dns"
)

// ErrNotFound is wrapped by Lookup's error when the name has no addresses: NXDOMAIN, or
// neither A nor AAAA records.
var ErrNotFound = errors.New("no address for name")

// UpstreamConfig configures an Upstream.
type UpstreamConfig struct {
	// Servers are the recursive resolvers asked about names outside every zone, in order.
	// Empty: such lookups fail.
	Servers []netip.AddrPort
	// Zones send names at or below their name to their own servers. Empty: none.
	Zones []Zone
	// Timeout bounds one lookup, every try included. The servers share it, each in turn; a
	// single server gets two tries. Zero: 5s.
	Timeout time.Duration
	// MaxTTL caps how long an answer is cached. Zero: 1h.
	MaxTTL time.Duration
	// MinTTL is the least time an answer is cached. Zero: no floor; a TTL of 0 is only
	// shared by lookups already waiting for it.
	MinTTL time.Duration
	// NegativeTTL is how long NXDOMAIN and NODATA are cached at most (less when the SOA's
	// negative TTL is shorter), and how long an answer is kept when one of A and AAAA failed.
	// Zero: 30s.
	NegativeTTL time.Duration
	// Logger, with a "pkg"="resolver" attribute. Nil: discarded.
	Logger *slog.Logger
}

// Upstream resolves the real addresses of allowed names for the top-level box's forwarder.
// It caches answers for their TTL and shares one query among concurrent lookups of a name.
// It holds no goroutines between lookups, so it needs no Close.
type Upstream struct {
	cfg   UpstreamConfig
	zones []Zone // sorted by sortZones
	log   *slog.Logger
	now   func() time.Time // tests move the clock

	mu       sync.Mutex
	cache    map[allowlist.Name]cached
	inflight map[allowlist.Name]*call
}

const (
	defaultLookupTimeout = 5 * time.Second
	defaultMaxTTL        = time.Hour
	defaultNegativeTTL   = 30 * time.Second
	maxCached            = 4096 // names; a wildcard rule makes the set of names unbounded
	maxChain             = 8    // CNAMEs followed, in one answer or across re-queries
)

type cached struct {
	addrs   []netip.Addr
	err     error
	expires time.Time
}

// call is one lookup in flight; done closes when addrs and err are set.
type call struct {
	done  chan struct{}
	addrs []netip.Addr
	err   error
}

// NewUpstream builds an Upstream.
func NewUpstream(cfg UpstreamConfig) *Upstream {
	if cfg.Timeout <= 0 {
		cfg.Timeout = defaultLookupTimeout
	}
	if cfg.MaxTTL <= 0 {
		cfg.MaxTTL = defaultMaxTTL
	}
	if cfg.NegativeTTL <= 0 {
		cfg.NegativeTTL = defaultNegativeTTL
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Upstream{
		cfg:      cfg,
		zones:    sortZones(cfg.Zones),
		log:      cfg.Logger.With("pkg", "resolver"),
		now:      time.Now,
		cache:    map[allowlist.Name]cached{},
		inflight: map[allowlist.Name]*call{},
	}
}

// Lookup returns the IPv4 and IPv6 addresses of name, IPv4 first, asking for A and AAAA in
// parallel and following CNAMEs. The slice is the caller's. A name without addresses gives
// an error wrapping ErrNotFound; other errors say which servers failed and how. Giving up on
// ctx does not cancel the query that other lookups of the name may be waiting for.
func (u *Upstream) Lookup(ctx context.Context, name allowlist.Name) ([]netip.Addr, error) {
	if name == "" {
		return nil, errors.New("resolver: lookup of an empty name")
	}
	u.mu.Lock()
	if c, ok := u.cache[name]; ok && u.now().Before(c.expires) {
		u.mu.Unlock()
		return slices.Clone(c.addrs), c.err
	}
	c, ok := u.inflight[name]
	if !ok {
		c = &call{done: make(chan struct{})}
		u.inflight[name] = c
		go u.run(context.WithoutCancel(ctx), name, c)
	}
	u.mu.Unlock()
	select {
	case <-c.done:
		return slices.Clone(c.addrs), c.err
	case <-ctx.Done():
		return nil, fmt.Errorf("resolver: lookup %s: %w", name, ctx.Err())
	}
}

func (u *Upstream) run(ctx context.Context, name allowlist.Name, c *call) {
	ctx, cancel := context.WithTimeout(ctx, u.cfg.Timeout)
	defer cancel()
	addrs, ttl, err := u.resolve(ctx, name)
	c.addrs, c.err = addrs, err

	u.mu.Lock()
	delete(u.inflight, name)
	if ttl > 0 {
		u.store(name, cached{addrs: addrs, err: err, expires: u.now().Add(ttl)})
	}
	u.mu.Unlock()
	close(c.done)
}

// store caches an answer; u.mu is held. When the cache is full it drops what has expired,
// and if nothing has, one name at random: the cache saves queries, it is not a record.
func (u *Upstream) store(name allowlist.Name, c cached) {
	if len(u.cache) >= maxCached {
		now := u.now()
		for n, old := range u.cache {
			if !now.Before(old.expires) {
				delete(u.cache, n)
			}
		}
		for n := range u.cache {
			if len(u.cache) < maxCached {
				break
			}
			delete(u.cache, n)
		}
	}
	u.cache[name] = c
}

// family is the outcome of the A or the AAAA half of a lookup.
type family struct {
	addrs []netip.Addr
	ttl   time.Duration // how long the answer (positive or negative) may be cached
	err   error         // no conclusive answer; nothing to cache
}

// resolve asks for A and AAAA and combines them, with how long to cache the result (0: not).
func (u *Upstream) resolve(ctx context.Context, name allowlist.Name) ([]netip.Addr, time.Duration, error) {
	servers := u.cfg.Servers
	if z := zoneFor(u.zones, name); z != nil {
		servers = z.Servers
	}
	if len(servers) == 0 {
		return nil, 0, fmt.Errorf("resolver: lookup %s: no upstream server", name)
	}
	tries := servers
	if len(tries) == 1 {
		tries = []netip.AddrPort{servers[0], servers[0]} // one retry
	}
	perTry := u.cfg.Timeout / time.Duration(len(tries))

	var v6 family
	var wg sync.WaitGroup
	wg.Go(func() { v6 = u.family(ctx, name, dns.TypeAAAA, tries, perTry) })
	v4 := u.family(ctx, name, dns.TypeA, tries, perTry)
	wg.Wait()

	addrs := append(v4.addrs, v6.addrs...)
	ttl := min(v4.ttl, v6.ttl)
	switch {
	case v4.err != nil && v6.err != nil:
		return nil, 0, fmt.Errorf("resolver: lookup %s: %w", name, errors.Join(v4.err, v6.err))
	case len(addrs) > 0:
		if v4.err != nil || v6.err != nil {
			// One family failed (some middleboxes drop AAAA queries): use the other, and
			// ask again soon rather than wait out every lookup's timeout until then.
			u.log.Warn("partial lookup", "name", name, "err", errors.Join(v4.err, v6.err))
			ttl = max(v4.ttl, v6.ttl)
			ttl = min(ttl, u.cfg.NegativeTTL)
		}
		return addrs, min(max(ttl, u.cfg.MinTTL), u.cfg.MaxTTL), nil
	case v4.err != nil || v6.err != nil:
		return nil, 0, fmt.Errorf("resolver: lookup %s: %w", name, errors.Join(v4.err, v6.err))
	}
	return nil, ttl, fmt.Errorf("resolver: lookup %s: %w", name, ErrNotFound)
}

// family asks for one address type, asking again for a CNAME target the answer left open (an
// authoritative stub-zone server does not chase out-of-zone CNAMEs).
func (u *Upstream) family(ctx context.Context, name allowlist.Name, qtype uint16, servers []netip.AddrPort, perTry time.Duration) family {
	target := dns.Fqdn(string(name))
	ttl := u.cfg.MaxTTL
	for range maxChain {
		q := new(dns.Msg)
		q.SetQuestion(target, qtype)
		q.SetEdns0(ednsSize, false)
		resp, srv, err := exchange(ctx, q, servers, perTry)
		if err != nil {
			return family{err: fmt.Errorf("%s %s: %w", dns.TypeToString[qtype], target, err)}
		}
		a := readAnswer(resp, target, qtype)
		ttl = min(ttl, a.ttl)
		switch {
		case len(a.addrs) > 0:
			return family{addrs: a.addrs, ttl: ttl}
		case a.next == "" || resp.Rcode == dns.RcodeNameError || a.negative:
			u.log.Debug("no address", "name", target, "type", dns.TypeToString[qtype], "server", srv, "rcode", dns.RcodeToString[resp.Rcode])
			return family{ttl: min(ttl, u.negativeTTL(resp))}
		}
		target = a.next
	}
	return family{err: fmt.Errorf("%s %s: more than %d CNAMEs", dns.TypeToString[qtype], name, maxChain)}
}

// answer is what one response says about a name.
type answer struct {
	addrs []netip.Addr
	ttl   time.Duration // the least TTL of the CNAMEs followed and the addresses
	next  string        // the CNAME target the answer ends on without its addresses
	// negative: the response carries an SOA, so the server looked at the chain's end and
	// found no addresses there (RFC 2308 §2.2); an open chain has no SOA.
	negative bool
}

// readAnswer follows the CNAME chain from name through the answer section and collects the
// addresses of qtype at its end.
func readAnswer(resp *dns.Msg, name string, qtype uint16) answer {
	a := answer{ttl: time.Duration(1<<31-1) * time.Second}
	owner := name
	for range maxChain {
		next := ""
		for _, rr := range resp.Answer {
			if c, ok := rr.(*dns.CNAME); ok && strings.EqualFold(c.Hdr.Name, owner) {
				next = c.Target
				a.ttl = min(a.ttl, seconds(c.Hdr.Ttl))
				break
			}
		}
		if next == "" {
			break
		}
		owner = next
	}
	for _, rr := range resp.Answer {
		h := rr.Header()
		if h.Rrtype != qtype || !strings.EqualFold(h.Name, owner) {
			continue
		}
		var ip netip.Addr
		switch rr := rr.(type) {
		case *dns.A:
			ip, _ = netip.AddrFromSlice(rr.A.To4())
		case *dns.AAAA:
			ip, _ = netip.AddrFromSlice(rr.AAAA)
		}
		if ip.IsValid() {
			a.addrs = append(a.addrs, ip)
			a.ttl = min(a.ttl, seconds(h.Ttl))
		}
	}
	if len(a.addrs) == 0 && !strings.EqualFold(owner, name) {
		a.next = owner
	}
	for _, rr := range resp.Ns {
		if rr.Header().Rrtype == dns.TypeSOA {
			a.negative = true
		}
	}
	return a
}

// negativeTTL is how long a response without addresses may be cached: the SOA's negative TTL
// (RFC 2308 §5) up to NegativeTTL, or NegativeTTL when there is no SOA.
func (u *Upstream) negativeTTL(resp *dns.Msg) time.Duration {
	for _, rr := range resp.Ns {
		if soa, ok := rr.(*dns.SOA); ok {
			return min(seconds(min(soa.Hdr.Ttl, soa.Minttl)), u.cfg.NegativeTTL)
		}
	}
	return u.cfg.NegativeTTL
}

func seconds(ttl uint32) time.Duration { return time.Duration(ttl) * time.Second }

// ServersFromResolvConf reads the "nameserver" lines of a resolv.conf file, as servers on
// port 53. Other lines are ignored; a file without nameservers is an error.
func ServersFromResolvConf(path string) ([]netip.AddrPort, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("resolver: %w", err)
	}
	defer f.Close()
	var servers []netip.AddrPort
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 || fields[0] != "nameserver" {
			continue
		}
		a, err := netip.ParseAddr(fields[1])
		if err != nil {
			return nil, fmt.Errorf("resolver: %s:%d: nameserver %q is not an address", path, line, fields[1])
		}
		servers = append(servers, netip.AddrPortFrom(a.Unmap(), 53))
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("resolver: %s: %w", path, err)
	}
	if len(servers) == 0 {
		return nil, fmt.Errorf("resolver: %s: no nameserver line", path)
	}
	return servers, nil
}
