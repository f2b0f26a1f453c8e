// Package forwarder accepts device connections on the proxy ports, reads each TLS ClientHello,
// decides with the allow list, and splices the stream to its destination without terminating
// TLS: the parent box one level up, the name's own address at the top level, or a rule's
// fixed destination. Static TCP routes forward a port to one destination without reading SNI.
package forwarder

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lnm-project/lnm/allowlist"
	"github.com/lnm-project/lnm/clienthello"
	"github.com/lnm-project/lnm/internal/acceptpace"
	"github.com/lnm-project/lnm/levelid"
)

// PortMap is one proxy port: devices connect to Listen, the stream leaves for Upstream.
type PortMap struct {
	Listen   uint16
	Upstream uint16 // zero: same as Listen
	// Front is what the port reads to decide: a ClientHello (the zero FrontTLS), an HTTP
	// request head, or a CONNECT.
	Front Front
}

// Route is a static TCP route: every connection to Port goes to To, no SNI is read.
type Route struct {
	Port uint16
	To   allowlist.Target
}

// Resolver looks up a real name's addresses for the top-level box; resolver.Upstream is the
// production implementation.
type Resolver interface {
	Lookup(ctx context.Context, name allowlist.Name) ([]netip.Addr, error)
}

// Defaults for the Config durations and sizes left at zero.
const (
	DefaultHelloTimeout = 10 * time.Second
	DefaultDialTimeout  = 5 * time.Second
	DefaultIdleTimeout  = time.Hour
	DefaultDrainTimeout = 5 * time.Second
)

// Config says what a Forwarder listens on and where it sends streams.
type Config struct {
	// Listen is the address the proxy and route ports bind to. The unspecified address binds
	// every local address.
	Listen netip.Addr
	// Ports are the TLS ports routed by SNI.
	Ports []PortMap
	// Routes are static TCP routes.
	Routes []Route
	// Sources are the devices that may connect; others are closed at once. Empty: anyone.
	Sources []netip.Prefix
	// List decides which SNI may pass; replace it at run time with Prepare and Commit. Nil
	// denies all.
	List *allowlist.List
	// Parent is the box one level up. Valid: every allowed stream goes to Parent on the
	// upstream port and the parent decides again. Invalid: this is the top level and names
	// are resolved with Resolver.
	Parent netip.Addr
	// Resolver resolves SNI names at the top level and named destinations of rules and
	// routes. Nil: such connections fail with ReasonResolveFailed.
	Resolver Resolver
	// Self lists the box's own addresses, which are never dialed for a resolved name.
	Self []netip.Addr
	// HelloTimeout bounds reading the ClientHello, counted once from accept; partial data does
	// not extend it. Zero: DefaultHelloTimeout.
	HelloTimeout time.Duration
	// DialTimeout bounds each connection attempt upstream. Zero: DefaultDialTimeout.
	DialTimeout time.Duration
	// IdleTimeout closes a stream after this long with no bytes in either direction (checked
	// per direction, so a silent stream ends between one and two periods after its last byte).
	// Zero: DefaultIdleTimeout.
	IdleTimeout time.Duration
	// IdleTimeouts overrides IdleTimeout for streams on some listen ports (a proxy's or a
	// tcp route's): MQTT keep-alives and OPC UA sessions want longer than browsers do.
	// Ports not in it, and a nil map: IdleTimeout.
	IdleTimeouts map[uint16]time.Duration
	// DrainTimeout bounds how long Close waits for live streams before cutting them.
	// Zero: DefaultDrainTimeout.
	DrainTimeout time.Duration
	// MaxHelloSize caps the ClientHello handshake message. Zero: MaxHelloSize (16 KiB).
	MaxHelloSize int
	// Learn lets every connection with a valid SNI through, recording what enforce would
	// deny as verdict "would-deny" (learn mode, for onboarding a plant). False: enforce.
	Learn bool
	// DrainRevoked lets live streams that a new allow list no longer allows run to their end
	// (`on_revoke drain`). False: Commit closes them (`on_revoke revoke`).
	DrainRevoked bool
	// MaxPending caps connections still waiting for their ClientHello, in all and from one
	// source address. When all are taken, the oldest waiting connection of the source that
	// holds the most makes room for a newcomer from a source holding fewer, and the hello
	// deadline of new connections shrinks as the table fills (see helloTimeout).
	// Zero: DefaultMaxPending and DefaultMaxPendingPerSrc. Negative: no cap.
	MaxPending, MaxPendingPerSrc int
	// MaxConns caps the connections open at once (waiting for a hello, connecting or
	// spliced, on proxy ports and tcp routes), in all; MaxConnsPerSrc from one source
	// address; ConnRate is a source's new connections a second, with bursts of twice as
	// many. Past one, new connections are closed at once. Zero: DefaultMaxConns,
	// DefaultMaxConnsPerSrc, DefaultConnRate. Negative: no limit.
	MaxConns, MaxConnsPerSrc, ConnRate int
	// Children are the boxes one level down: their per-source limits (MaxConnsPerSrc,
	// ConnRate, MaxPendingPerSrc) are ChildFactor times the others'. Empty: none.
	Children []netip.Prefix
	// ChildFactor raises the per-source limits of Children. Zero: DefaultChildFactor.
	ChildFactor int
	// Identity is the box's side of level identity (`level_identity on`, package levelid):
	// a child's header is read before the ClientHello and recorded as Event.Origin, a PROXY
	// header from anyone else is refused, and a stream to Parent begins with this box's
	// header. Nil: off; no header is read or sent.
	Identity *levelid.Box
	// OnLimited, if set, hears of the connections closed without a record of their own: a
	// LimitEvent per source every 10 seconds while there are any, and at Close. Past a few
	// a period, a source's connections that a limit closed or that never sent a hello are
	// only counted (floodReason), so a flood writes a summary, not a record per connection.
	OnLimited func(LimitEvent)
	// Logger receives one record per decision and per closed stream. Nil: discard.
	Logger *slog.Logger
	// OnEvent, if set, receives every connection event (the audit trail plugs in here). It
	// runs on the connection's goroutine and must not block. If it returns an error for an
	// open event (the record cannot be kept), the stream is closed before any byte is
	// forwarded: what cannot be audited does not pass. Errors for deny and close events
	// change nothing.
	OnEvent func(Event) error
	limits  limits // the limits above with their defaults, filled in by withDefaults

	// NewID numbers connections; forwarders of one box share it so ids are unique per
	// process. Nil: a counter of this Forwarder's own, from 1.
	NewID func() uint64
	// Dial opens upstream connections. Nil: a net.Dialer with DialTimeout.
	Dial func(ctx context.Context, network, address string) (net.Conn, error)
}

// Forwarder serves the proxy and route ports of one Config. Prepare and Commit replace the
// config while it runs.
type Forwarder struct {
	cfg  Config // as given to New: Listen, OnEvent, NewID, Dial, Logger, DrainTimeout never change
	conf atomic.Pointer[Config]
	log  *slog.Logger
	gate *gate
	// stopSum is closed by Close once every stream ended: the limit summaries' last round,
	// after which sumDone closes. Both nil until Start.
	stopSum, sumDone chan struct{}
	// acceptErrors counts failed accepts over all listeners, for metrics.
	acceptErrors atomic.Uint64

	ctx    context.Context // good until Close
	cancel context.CancelFunc

	mu        sync.Mutex
	started   bool
	listeners map[uint16]net.Listener
	conns     map[*stream]struct{}
	closed    bool
	prepared  *Prepared      // the config between Prepare and Commit or Abort; nil: none
	wg        sync.WaitGroup // accept loops and streams

	// The liveness counters (see Progress): accepts is bumped by every accept loop, live
	// holds the serving listeners, replaced whole under mu and read without it.
	accepts atomic.Uint64
	live    atomic.Pointer[[]net.Listener]
}

// withDefaults checks cfg and fills in the defaults of its zero fields.
func withDefaults(cfg Config) (Config, error) {
	if cfg.HelloTimeout <= 0 {
		cfg.HelloTimeout = DefaultHelloTimeout
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = DefaultDialTimeout
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.DrainTimeout <= 0 {
		cfg.DrainTimeout = DefaultDrainTimeout
	}
	if cfg.MaxHelloSize <= 0 {
		cfg.MaxHelloSize = clienthello.MaxSize
	}
	cfg.MaxPending = orDefault(cfg.MaxPending, DefaultMaxPending)
	cfg.MaxPendingPerSrc = orDefault(cfg.MaxPendingPerSrc, DefaultMaxPendingPerSrc)
	cfg.limits = newLimits(&cfg)
	if !cfg.Listen.IsValid() {
		return cfg, errors.New("forwarder: no listen address")
	}
	cfg.Ports = slices.Clone(cfg.Ports)
	seen := map[uint16]bool{}
	for i, p := range cfg.Ports {
		if p.Listen == 0 {
			return cfg, fmt.Errorf("forwarder: proxy port %d is zero", i+1)
		}
		if p.Upstream == 0 {
			cfg.Ports[i].Upstream = p.Listen
		}
		seen[p.Listen] = true
	}
	for _, r := range cfg.Routes {
		if r.Port == 0 || seen[r.Port] {
			return cfg, fmt.Errorf("forwarder: route port %d is zero or used twice", r.Port)
		}
		seen[r.Port] = true
	}
	if cfg.NewID == nil {
		var n atomic.Uint64
		cfg.NewID = func() uint64 { return n.Add(1) }
	}
	if cfg.Dial == nil {
		d := &net.Dialer{Timeout: cfg.DialTimeout}
		cfg.Dial = d.DialContext
	}
	return cfg, nil
}

// New checks the config and returns a Forwarder that is not yet listening.
func New(cfg Config) (*Forwarder, error) {
	cfg, err := withDefaults(cfg)
	if err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	f := &Forwarder{
		cfg:       cfg,
		log:       log.With("pkg", "forwarder"),
		listeners: map[uint16]net.Listener{},
		conns:     map[*stream]struct{}{},
		gate:      newGate(),
	}
	f.conf.Store(&cfg)
	f.ctx, f.cancel = context.WithCancel(context.Background())
	return f, nil
}

// ports lists the ports a config listens on: proxy ports, then routes.
func (c *Config) ports() []uint16 {
	var out []uint16
	for _, p := range c.Ports {
		out = append(out, p.Listen)
	}
	for _, r := range c.Routes {
		out = append(out, r.Port)
	}
	return out
}

// Start binds every proxy and route port, then serves them in the background. If any port
// cannot be bound, none stay bound.
func (f *Forwarder) Start() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed || f.started {
		return errors.New("forwarder: already started or closed")
	}
	lns, err := f.bind(f.conf.Load().ports())
	if err != nil {
		return err
	}
	f.started = true
	f.stopSum, f.sumDone = make(chan struct{}), make(chan struct{})
	go f.summarizeLimits(f.stopSum, f.sumDone)
	f.serve(lns)
	return nil
}

// bind listens on ports; on any error it closes what it bound.
func (f *Forwarder) bind(ports []uint16) (map[uint16]net.Listener, error) {
	lns := map[uint16]net.Listener{}
	for _, port := range ports {
		addr := netip.AddrPortFrom(f.cfg.Listen, port).String()
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			for _, l := range lns {
				l.Close()
			}
			return nil, fmt.Errorf("forwarder: listen on %s: %w", addr, err)
		}
		lns[port] = ln
	}
	return lns, nil
}

// serve starts an accept loop per new listener. f.mu is held.
func (f *Forwarder) serve(lns map[uint16]net.Listener) {
	for port, ln := range lns {
		f.listeners[port] = ln
		f.log.Info("listening", "addr", ln.Addr().String())
		f.wg.Add(1)
		go f.acceptLoop(ln, port)
	}
	f.publishListeners()
}

// Addrs returns the bound listener addresses in config order: proxy ports, then routes.
func (f *Forwarder) Addrs() []netip.AddrPort {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []netip.AddrPort
	for _, port := range f.conf.Load().ports() {
		if ln, ok := f.listeners[port]; ok {
			out = append(out, ln.Addr().(*net.TCPAddr).AddrPort())
		}
	}
	return out
}

// Close stops accepting, waits up to DrainTimeout for live streams to finish, then cuts the
// rest. It is idempotent.
func (f *Forwarder) Close() error {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return nil
	}
	f.closed = true
	for _, ln := range f.listeners {
		ln.Close()
	}
	f.live.Store(nil)
	if f.prepared != nil {
		f.prepared.abort()
	}
	f.mu.Unlock()

	done := make(chan struct{})
	go func() { f.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(f.cfg.DrainTimeout):
		f.cancel() // stops pending hellos and dials
		f.mu.Lock()
		for s := range f.conns {
			s.abort(ReasonShutdown)
		}
		f.mu.Unlock()
		<-done
	}
	f.cancel()
	if f.stopSum != nil {
		close(f.stopSum)
		<-f.sumDone
	}
	return nil
}

// AcceptErrors is how many accepts have failed since New, on every port: a box out of file
// descriptors shows here first.
func (f *Forwarder) AcceptErrors() uint64 { return f.acceptErrors.Load() }

// acceptLoop accepts until the listener closes, backing off on errors (such as running out
// of file descriptors) and summarizing them (acceptpace).
func (f *Forwarder) acceptLoop(ln net.Listener, port uint16) {
	defer f.wg.Done()
	var fails acceptpace.Pacer
	for {
		c, err := ln.Accept()
		f.accepts.Add(1)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			f.acceptErrors.Add(1)
			wait, first := fails.Failed()
			if first {
				msg := "accept failed; retrying, and logging again when it works"
				if outOfDescriptors(err) {
					msg = "accept failed: the box is out of file descriptors (raise LimitNOFILE); retrying"
				}
				f.log.Warn(msg, "addr", ln.Addr().String(), "err", err)
			}
			select {
			case <-time.After(wait):
			case <-f.ctx.Done():
				return
			}
			continue
		}
		if n := fails.OK(); n > 0 {
			f.log.Warn("accepting again", "addr", ln.Addr().String(), "failed_accepts", n)
		}
		f.mu.Lock()
		if f.closed {
			f.mu.Unlock()
			c.Close()
			return
		}
		f.wg.Add(1)
		f.mu.Unlock()
		go func() {
			defer f.wg.Done()
			f.serveConn(c, port)
		}()
	}
}

// idleTimeout is the idle timeout of streams on port.
func (c *Config) idleTimeout(port uint16) time.Duration {
	if d, ok := c.IdleTimeouts[port]; ok && d > 0 {
		return d
	}
	return c.IdleTimeout
}

// policy is the decision part of the config.
func (c *Config) policy() allowlist.Policy {
	return allowlist.Policy{List: c.List, Sources: c.Sources, Learn: c.Learn}
}
