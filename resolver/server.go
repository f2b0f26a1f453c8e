package resolver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/lnm-project/lnm/allowlist"
	"github.com/lnm-project/lnm/internal/udpsock"
	"github.com/miekg/dns"
	"golang.org/x/net/netutil"
)

// Zone is a stub zone: questions for its name and every name below it are forwarded to its
// servers and the answer relayed, whatever the allow list says (local plant names keep working
// when devices point at the box).
type Zone struct {
	Name    allowlist.Name
	Servers []netip.AddrPort // tried in order until one answers
}

// sortZones returns a copy of zones, the deepest name first, for zoneFor.
func sortZones(zones []Zone) []Zone {
	zones = slices.Clone(zones)
	slices.SortStableFunc(zones, func(a, b Zone) int {
		return strings.Count(string(b.Name), ".") - strings.Count(string(a.Name), ".")
	})
	return zones
}

// zoneFor returns the deepest zone holding name, or nil; zones come from sortZones.
func zoneFor(zones []Zone, name allowlist.Name) *Zone {
	for i := range zones {
		if z := &zones[i]; name == z.Name || name.IsBelow(z.Name) {
			return z
		}
	}
	return nil
}

// isSelf reports whether server is the socket self listens on, so that forwarding there
// would ask this server again, forever. A server on a wildcard address has every local
// address; the loopback ones are checked (others would need a lookup of the interfaces), and
// a server on "::" hears IPv4 too (listenBoth listens dual-stack there). A port 0 (not yet
// bound) matches nothing.
func isSelf(self, server netip.AddrPort) bool {
	if self.Port() == 0 || server.Port() != self.Port() {
		return false
	}
	listen, a := self.Addr().Unmap(), server.Addr().Unmap()
	if !listen.IsUnspecified() {
		return a.WithZone("") == listen.WithZone("")
	}
	return a.IsLoopback() && (listen.Is6() || a.Is4())
}

// Config configures a Server. Only Addr is required.
type Config struct {
	// Addr is the address and port the server listens on, UDP and TCP alike. An unspecified
	// address (0.0.0.0, ::) listens on every address, and A and AAAA answers then carry the
	// local address each query arrived on. Port 0 picks a free port (see Server.Addr).
	// Zero: New fails.
	Addr netip.AddrPort
	// Answer4 is the box's IPv4 address for A answers. Zero: Addr's address when that is a
	// specific IPv4 address; on a wildcard, the local address of the query when it came over
	// IPv4. When no address applies, A questions get NODATA.
	Answer4 netip.Addr
	// Answer6 is the box's IPv6 address for AAAA answers, with the same defaults as Answer4.
	// Zero on an IPv4 box: AAAA questions get NODATA, so devices fall back to IPv4.
	Answer6 netip.Addr
	// TTL is the TTL of synthesized answers and the negative TTL of the SOA. Zero: 60s.
	TTL time.Duration
	// List is the allow list the server starts with; Prepare and Commit replace it. Nil:
	// nothing is allowed, so every name is NXDOMAIN (stub zones still work).
	List *allowlist.List
	// Sources are the clients the server answers. Others get REFUSED. Empty: everyone.
	Sources []netip.Prefix
	// Zones are the stub zones. Empty: none; the server never sends a query of its own.
	Zones []Zone
	// MaxTCPConns bounds concurrent TCP connections; more wait in the kernel's backlog.
	// Zero: 150 (BIND's tcp-clients). Negative: unbounded.
	MaxTCPConns int
	// MaxTCPPerSource bounds the TCP connections one client address holds at once; past it,
	// a new one is closed at once and counted (OnLimited's TCPRefused). Zero:
	// DefaultMaxTCPPerSource. Negative: unbounded.
	MaxTCPPerSource int
	// Children are the boxes one level down, whose MaxTCPPerSource is ChildFactor times
	// larger. Empty: none. ChildFactor zero: DefaultChildFactor.
	Children    []netip.Prefix
	ChildFactor int
	// Logger receives errors and panics, with a "pkg"="resolver" attribute. Nil: discarded.
	Logger *slog.Logger
	// OnQuery is called once per answered question, on the query's goroutine just before
	// the reply is sent, so that the audit record exists before the client can act on the
	// answer; it must be quick. If it returns an error (the record cannot be kept), the
	// client gets SERVFAIL instead of the answer: what cannot be audited is not answered, and
	// a device with a second box tries that one. Nil: nothing is called.
	OnQuery func(QueryEvent) error
	// Learn answers every host name as if it were allowed, recording what enforce would deny
	// as VerdictWouldDeny (learn mode, for onboarding a plant). False: enforce.
	Learn bool
	// DenyRefused answers names the list denies with a bare REFUSED, which clients take as
	// "ask another server" and never cache, instead of NXDOMAIN. The event is the same
	// (VerdictDeny and the list's reason); only its Rcode differs. Names with allowed names
	// below them still get NODATA. False: NXDOMAIN with the SOA (RFC 2308), which tells
	// caches the name does not exist.
	DenyRefused bool
	// NotifyStarted is called by Start once UDP and TCP both listen. Nil: nothing is called.
	NotifyStarted func()
	// RateLimit bounds the UDP queries a client address may send, per second, with bursts
	// of as many. Over it, every second query gets an empty reply with TC set (a real client
	// retries over TCP, which is not limited) and the others none; OnQuery is not called
	// for them. Zero: no limit.
	RateLimit int
	// UDPSockets is how many UDP sockets share the port (SO_REUSEPORT), each with a read
	// loop of its own that takes datagrams in batches. Zero: runtime.NumCPU().
	UDPSockets int
	// Flush, when set, is called before answers leave, once per batch of UDP answers and
	// before each answer of the slow path (TCP, unusual queries): it puts the audit records
	// OnQuery took into the kernel (write(2)), so a crash of the process loses no record of
	// an answer a client saw. If it fails, the batch is not answered. Nil: nothing is called.
	Flush func() error
	// OnLimited hears what the rate limit and MaxTCPPerSource did, a summary per client
	// every 10 seconds while they limit and at Close: never a call per packet or
	// connection. Nil: nothing is called.
	OnLimited func(LimitEvent)
}

// Defaults the box's config starts from (package config takes them from here).
const (
	// DefaultTTL is the TTL of synthesized answers when Config.TTL is zero.
	DefaultTTL = 60 * time.Second
	// DefaultPort is the DNS port, for the server and for upstream servers written without one.
	DefaultPort uint16 = 53
	// DefaultRateLimit is the config's default for RateLimit, a client's UDP queries a second: a
	// device that resolves before every connection stays far below it, one stuck in a loop
	// does not. (A zero RateLimit means no limit.)
	DefaultRateLimit = 500
)

const (
	defaultMaxTCPConns = 150
	tcpReadTimeout     = 5 * time.Second  // for the first message on a connection
	tcpIdleTimeout     = 10 * time.Second // between messages (RFC 7766 §6.2.3)
	tcpWriteTimeout    = 5 * time.Second
	zoneTryTimeout     = 2 * time.Second // per stub-zone server
	closeTimeout       = 3 * time.Second
)

// Server is the authoritative DNS server. Build one with New, then Start it.
type Server struct {
	cfg Config
	pol atomic.Pointer[policy] // replaced whole by Prepared.Commit
	log *slog.Logger

	ctx    context.Context // good until Close: bounds stub-zone forwarding
	cancel context.CancelFunc

	mu      sync.Mutex
	started bool
	closed  bool
	addr    netip.AddrPort
	servers []*dns.Server
	// tcpAccept is the TCP listener's pacing, kept for AcceptErrors; nil before Start.
	tcpAccept *pacedListener
	served    sync.WaitGroup             // the serving goroutines
	limit     *limiter                   // nil: no rate limit
	tcpLim    atomic.Pointer[tcpLimiter] // the TCP listener's per-source limit, once Start made it
	stopSum   chan struct{}              // closed at Close: the summary goroutine's last round
	sumDone   chan struct{}              // closed when it has returned

	closeOnce sync.Once
	closeErr  error

	zoneTimeout time.Duration // per stub-zone server; tests shorten it
	tcpTimers   tcpTimers     // DNS TCP read timers before load shrinks them; tests shorten them

	// The liveness counters (see Progress); udp is the UDP socket once Start bound it.
	reads    atomic.Uint64
	running  atomic.Int64
	answered atomic.Uint64
	udp      atomic.Pointer[[]*udpsock.Conn]

	flushLogged atomic.Int64 // when a failing Flush was last logged (unix nanoseconds)

	// testHook, when set, is called first thing in ServeDNS; tests make it panic or block.
	testHook func(*dns.Msg)
}

// New checks the configuration and builds a server; it does not listen.
func New(cfg Config) (*Server, error) {
	if !cfg.Addr.IsValid() {
		return nil, errors.New("resolver: no listen address")
	}
	if cfg.MaxTCPConns == 0 {
		cfg.MaxTCPConns = defaultMaxTCPConns
	}
	if cfg.MaxTCPPerSource == 0 {
		cfg.MaxTCPPerSource = DefaultMaxTCPPerSource
	}
	if cfg.UDPSockets <= 0 {
		cfg.UDPSockets = runtime.NumCPU()
	}
	if cfg.RateLimit < 0 {
		return nil, fmt.Errorf("resolver: rate limit %d is negative", cfg.RateLimit)
	}
	pol, err := newPolicy(&cfg, cfg.Addr)
	if err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		cfg:         cfg,
		log:         cfg.Logger.With("pkg", "resolver"),
		zoneTimeout: zoneTryTimeout,
		tcpTimers:   defaultTCPTimers,
	}
	if cfg.RateLimit > 0 {
		s.limit = newLimiter(cfg.RateLimit)
	}
	s.pol.Store(pol)
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s, nil
}

// summarizeLimits hands OnLimited what the rate limit did, every limitSummaryEvery and a
// last time when Close stops it.
func (s *Server) summarizeLimits(every time.Duration) {
	defer close(s.sumDone)
	tick := time.NewTicker(every)
	defer tick.Stop()
	report := func() {
		var evs []LimitEvent
		if s.limit != nil {
			evs = s.limit.summarize(time.Now().UnixNano())
		}
		if l := s.tcpLim.Load(); l != nil {
			evs = append(evs, l.summarize()...)
		}
		for _, ev := range evs {
			if s.cfg.OnLimited != nil {
				s.cfg.OnLimited(ev)
			}
		}
	}
	for {
		select {
		case <-tick.C:
			report()
		case <-s.stopSum:
			report()
			return
		}
	}
}

// newPolicy builds what answers depend on from cfg, filling in its TTL default. self is the
// server's own socket (its port 0 while not yet bound), which no stub zone may forward to.
func newPolicy(cfg *Config, self netip.AddrPort) (*policy, error) {
	listen := cfg.Addr.Addr().Unmap()
	wildcard := listen.IsUnspecified()
	if cfg.TTL == 0 {
		cfg.TTL = DefaultTTL
	}
	ttl := cfg.TTL / time.Second
	if cfg.TTL < time.Second || ttl > 1<<31-1 {
		return nil, fmt.Errorf("resolver: TTL %s is not between 1s and 2^31-1 seconds", cfg.TTL)
	}
	a4, a6 := cfg.Answer4.Unmap(), cfg.Answer6
	if !a4.IsValid() && !wildcard && listen.Is4() {
		a4 = listen
	}
	if !a6.IsValid() && !wildcard && listen.Is6() {
		a6 = listen.WithZone("")
	}
	if a4.IsValid() && !a4.Is4() {
		return nil, fmt.Errorf("resolver: Answer4 %s is not an IPv4 address", a4)
	}
	if a6.IsValid() && (!a6.Is6() || a6.Is4In6() || a6.Zone() != "") {
		return nil, fmt.Errorf("resolver: Answer6 %s is not a global-form IPv6 address", a6)
	}
	zones := sortZones(cfg.Zones)
	for _, z := range zones {
		if z.Name == "" || len(z.Servers) == 0 {
			return nil, fmt.Errorf("resolver: stub zone %q needs a name and at least one server", z.Name)
		}
		for _, server := range z.Servers {
			if isSelf(self, server) {
				return nil, fmt.Errorf("resolver: stub zone %s forwards to %s, which is this server itself", z.Name, server)
			}
		}
	}
	return &policy{
		answer4:  a4,
		answer6:  a6,
		wildcard: wildcard,
		ttl:      uint32(ttl),
		sources:  slices.Clone(cfg.Sources),
		zones:    zones,
		list:     cfg.List,
		learn:    cfg.Learn,
		refuse:   cfg.DenyRefused,
	}, nil
}

// Addr returns the address the server listens on, with the port it got when Config.Addr's
// port was 0. Before Start it is Config.Addr.
func (s *Server) Addr() netip.AddrPort {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.addr.IsValid() {
		return s.addr
	}
	return s.cfg.Addr
}

// AcceptErrors is how many TCP accepts have failed since Start (out of file descriptors,
// most often).
func (s *Server) AcceptErrors() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tcpAccept == nil {
		return 0
	}
	return s.tcpAccept.fails.Load()
}

// Start listens on UDP and TCP and returns once both serve. A server starts at most once.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("resolver: start: server is closed")
	}
	if s.started {
		return errors.New("resolver: start: server already started")
	}
	tl, ucs, err := listenBoth(s.cfg.Addr, s.cfg.UDPSockets)
	if err != nil {
		return err
	}
	s.addr = netip.AddrPortFrom(s.cfg.Addr.Addr(), uint16(tl.Addr().(*net.TCPAddr).Port))
	s.tcpAccept = newPacedListener(tl, s.log)
	lim := newTCPLimiter(s.tcpAccept, &s.cfg, s.log)
	s.tcpLim.Store(lim)
	tl = lim
	if s.cfg.MaxTCPConns > 0 {
		tl = netutil.LimitListener(tl, s.cfg.MaxTCPConns)
	}

	ready := make(chan struct{}, 1)
	failed := make(chan error, 1)
	s.servers = []*dns.Server{{
		Listener:          tl,
		Handler:           s,
		DecorateReader:    s.decorateTCPReader, // timers that shrink under load (tcptimers.go)
		DecorateWriter:    decorateWriter,
		MsgAcceptFunc:     acceptMsg,
		ReadTimeout:       tcpReadTimeout,
		WriteTimeout:      tcpWriteTimeout,
		IdleTimeout:       func() time.Duration { return tcpIdleTimeout },
		MaxTCPQueries:     -1, // the timers bound a connection, not a count (CoreDNS #5784)
		NotifyStartedFunc: func() { ready <- struct{}{} },
	}}
	for _, srv := range s.servers {
		s.served.Add(1)
		go func() {
			defer s.served.Done()
			if err := srv.ActivateAndServe(); err != nil {
				s.log.Error("dns server stopped", "addr", s.addr, "err", err)
				failed <- err
			}
		}()
	}
	select {
	case <-ready:
	case err := <-failed:
		for _, uc := range ucs {
			uc.Close()
		}
		tl.Close()
		return fmt.Errorf("resolver: serve %s: %w", s.addr, err)
	}
	for _, uc := range ucs {
		s.served.Add(1)
		go s.serveUDP(uc)
	}
	s.started = true
	s.udp.Store(&ucs)
	if s.limit != nil || s.cfg.MaxTCPPerSource > 0 {
		s.stopSum, s.sumDone = make(chan struct{}), make(chan struct{})
		go s.summarizeLimits(limitSummaryEvery)
	}
	s.log.Info("dns server listening", "addr", s.addr)
	if s.cfg.NotifyStarted != nil {
		s.cfg.NotifyStarted()
	}
	return nil
}

// listenBoth binds TCP, then n UDP sockets on the same port. With port 0 the kernel picks the TCP port,
// which may be taken for UDP; then it tries another.
func listenBoth(addr netip.AddrPort, n int) (net.Listener, []*udpsock.Conn, error) {
	tcpNet, udpNet := "tcp", "udp"
	if addr.Addr().Is4() {
		tcpNet, udpNet = "tcp4", "udp4" // 0.0.0.0 means IPv4 only, not Go's dual stack
	}
	for try := 0; ; try++ {
		tl, err := net.ListenTCP(tcpNet, net.TCPAddrFromAddrPort(addr))
		if err != nil {
			return nil, nil, fmt.Errorf("resolver: listen tcp %s: %w", addr, err)
		}
		bound := netip.AddrPortFrom(addr.Addr(), uint16(tl.Addr().(*net.TCPAddr).Port))
		ucs, err := udpsock.Listen(udpNet, bound, n)
		if err == nil {
			return tl, ucs, nil
		}
		tl.Close()
		if addr.Port() != 0 || try == 10 || !errors.Is(err, syscall.EADDRINUSE) {
			return nil, nil, fmt.Errorf("resolver: listen udp %s: %w", bound, err)
		}
	}
}

// Close stops both listeners and waits, for at most a few seconds, for queries being answered
// (stub-zone forwards are cancelled). It returns the same result however often it is called.
func (s *Server) Close() error {
	s.closeOnce.Do(func() { s.closeErr = s.shutdown() })
	return s.closeErr
}

func (s *Server) shutdown() error {
	s.mu.Lock()
	s.closed = true
	started := s.started
	s.mu.Unlock()
	ucs := s.udp.Swap(nil)
	s.cancel()
	if !started {
		return nil
	}
	if ucs != nil {
		for _, uc := range *ucs {
			uc.Close() // ends the read loops
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
	defer cancel()
	var errs []error
	for _, srv := range s.servers {
		if err := srv.ShutdownContext(ctx); err != nil {
			errs = append(errs, fmt.Errorf("resolver: stop %s: %w", s.addr, err))
		}
	}
	done := make(chan struct{})
	go func() {
		s.served.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		errs = append(errs, fmt.Errorf("resolver: stop %s: %w", s.addr, ctx.Err()))
	}
	if s.stopSum != nil { // after serving stopped: nothing is limited after the last summary
		close(s.stopSum)
		<-s.sumDone
	}
	return errors.Join(errs...)
}

// ServeDNS answers one request. A panic is logged and answered with SERVFAIL.
func (s *Server) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	var (
		client             netip.AddrPort
		tcp, hooked, wrote bool
	)
	s.running.Add(1)
	defer func() {
		s.running.Add(-1)
		s.answered.Add(1)
	}()
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("panic answering a query", "client", client, "panic", p, "stack", string(debug.Stack()))
			if wrote || req == nil || req.Response {
				return
			}
			m := new(dns.Msg)
			m.SetRcode(req, dns.RcodeServerFailure)
			if !hooked { // a panicking OnQuery is not called again from here
				s.notify(req, m, client, tcp, outcome{verdict: VerdictError, reason: ReasonPanic})
			}
			if s.flush() == nil {
				w.WriteMsg(m)
			}
		}
	}()
	client, tcp = peer(w)
	if s.testHook != nil {
		s.testHook(req)
	}
	if !tcp && s.limit != nil {
		switch s.limit.take(client.Addr(), time.Now().UnixNano()) {
		case limitTruncate:
			m := new(dns.Msg)
			m.SetReply(req)
			m.Truncated = true
			wrote = true
			w.WriteMsg(m)
			return
		case limitDrop:
			return
		}
	}
	pol := s.pol.Load()
	q := query{list: pol.list, client: client.Addr(), local: localAddr(w), udp: !tcp}

	reply, out := pol.answer(req, q)
	if out.zone != nil {
		reply = pol.relayed(req, s.forward(req, out.zone), q)
		if reply.Rcode == dns.RcodeServerFailure {
			out.reason = ReasonZoneFailed
		}
	}
	if reply == nil {
		return
	}
	hooked = true
	if err := s.notify(req, reply, client, tcp, out); err != nil {
		s.log.Warn("answering SERVFAIL: the query could not be recorded", "client", client, "err", err)
		reply = new(dns.Msg)
		reply.SetRcode(req, dns.RcodeServerFailure)
	}
	wrote = true
	if err := s.flush(); err != nil {
		return // what was not recorded is not answered; the client asks again
	}
	if err := w.WriteMsg(reply); err != nil {
		s.log.Debug("write reply", "client", client, "err", err)
	}
}

// forward asks the stub zone's servers the client's question and returns the first
// conclusive response, or nil.
func (s *Server) forward(req *dns.Msg, z *Zone) *dns.Msg {
	question := req.Question[0]
	q := new(dns.Msg)
	q.Id = dns.Id()
	q.RecursionDesired = req.RecursionDesired
	q.CheckingDisabled = req.CheckingDisabled
	q.Question = []dns.Question{question}
	q.SetEdns0(ednsSize, readEDNS(req).do)
	resp, _, err := exchange(s.ctx, q, z.Servers, s.zoneTimeout)
	if err != nil {
		s.log.Warn("stub zone servers failed", "zone", z.Name, "name", question.Name, "err", err)
		return nil
	}
	return resp
}

func (s *Server) notify(req, reply *dns.Msg, client netip.AddrPort, tcp bool, out outcome) error {
	if s.cfg.OnQuery == nil || len(req.Question) == 0 {
		return nil
	}
	ev := QueryEvent{
		Time:    time.Now(),
		Client:  client,
		TCP:     tcp,
		QName:   req.Question[0].Name,
		Name:    out.name,
		Type:    req.Question[0].Qtype,
		Verdict: out.verdict,
		Reason:  out.reason,
		Rule:    out.rule,
		Rcode:   reply.Rcode,
	}
	for _, rr := range reply.Answer {
		switch rr := rr.(type) {
		case *dns.A:
			if a, ok := netip.AddrFromSlice(rr.A); ok {
				ev.Answers = append(ev.Answers, a.Unmap())
			}
		case *dns.AAAA:
			if a, ok := netip.AddrFromSlice(rr.AAAA); ok {
				ev.Answers = append(ev.Answers, a)
			}
		}
	}
	return s.cfg.OnQuery(ev)
}

// peer returns the client's address and whether it came over TCP.
func peer(w dns.ResponseWriter) (netip.AddrPort, bool) {
	switch a := w.RemoteAddr().(type) {
	case *udpsock.Peer:
		return unmapPort(a.Remote.AddrPort()), false
	case *net.UDPAddr:
		return unmapPort(a.AddrPort()), false
	case *net.TCPAddr:
		return unmapPort(a.AddrPort()), true
	}
	return netip.AddrPort{}, false
}

// localAddr returns the address the query arrived on, when known.
func localAddr(w dns.ResponseWriter) netip.Addr {
	if p, ok := w.RemoteAddr().(*udpsock.Peer); ok && p.Local.IsValid() {
		return p.Local
	}
	switch a := w.LocalAddr().(type) {
	case *net.UDPAddr:
		return a.AddrPort().Addr().Unmap()
	case *net.TCPAddr:
		return a.AddrPort().Addr().Unmap()
	}
	return netip.Addr{}
}

func unmapPort(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}
