package forwarder

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"time"

	"github.com/lnm-project/lnm/allowlist"
	"github.com/lnm-project/lnm/clienthello"
	"github.com/lnm-project/lnm/internal/netpoll"
	"github.com/lnm-project/lnm/internal/splice"
	"github.com/lnm-project/lnm/levelid"
)

// TLS alert records sent before closing (RFC 8446 §6). The legacy record version 0x0303 is
// what every TLS 1.2 and 1.3 peer accepts.
var (
	alertAccessDenied  = []byte{0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 49}  // fatal access_denied
	alertInternalError = []byte{0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 80}  // fatal internal_error
	alertDecodeError   = []byte{0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 50}  // fatal decode_error
	alertUnrecognized  = []byte{0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 112} // fatal unrecognized_name
)

// stream is a live connection the forwarder tracks for shutdown and reconfiguration.
type stream struct {
	client net.Conn
	port   uint16
	src    netip.Addr
	via    Via
	sni    allowlist.Name // set once the hello is read
	// A CONNECT's: the port decided on, and the address if it named one (serveFront).
	dport uint16
	dst   netip.AddrPort
	pipe  *splice.Pipe // nil until spliced; set and read under Forwarder.mu
	// spliced: the stream outlives its serving goroutine; the pipe's end untracks and
	// releases it (set by that goroutine before it returns).
	spliced bool

	// Under gate.mu: waiting while the stream holds a pending slot, in its source's list
	// (prev, next); evicted once the gate closed it to make room.
	waiting, evicted bool
	prev, next       *stream
}

func (s *stream) abort(reason allowlist.Reason) {
	if s.pipe != nil {
		s.pipe.Close(string(reason))
		return
	}
	s.client.Close()
}

func (f *Forwarder) track(s *stream) {
	f.mu.Lock()
	f.conns[s] = struct{}{}
	f.mu.Unlock()
}

// untrack forgets s when its serving goroutine is done with it, unless it was spliced.
func (f *Forwarder) untrack(s *stream) {
	if !s.spliced {
		f.forget(s)
	}
}

func (f *Forwarder) forget(s *stream) {
	f.mu.Lock()
	delete(f.conns, s)
	f.mu.Unlock()
}

// serveConn hands a new connection to the role its port has in the current config.
func (f *Forwarder) serveConn(c net.Conn, port uint16) {
	cfg := f.conf.Load()
	for _, pm := range cfg.Ports {
		if pm.Listen == port && pm.Front != FrontTLS {
			f.serveFront(c, cfg, pm)
			return
		} else if pm.Listen == port {
			f.serveTLS(c, cfg, pm)
			return
		}
	}
	for _, r := range cfg.Routes {
		if r.Port == port {
			f.serveRoute(c, cfg, r)
			return
		}
	}
	c.Close() // the port was removed by a reconfiguration while this connection was accepted
}

// serveTLS handles one connection to a proxy port: source check, ClientHello, decision,
// destination, splice.
func (f *Forwarder) serveTLS(c net.Conn, cfg *Config, pm PortMap) {
	start := time.Now()
	ev := Event{ID: f.cfg.NewID(), Client: remoteAddrPort(c), Port: pm.Listen}
	s := &stream{client: c, port: pm.Listen, src: ev.Client.Addr()}
	f.track(s)
	defer f.untrack(s)

	pol := cfg.policy()
	if !pol.Admits(ev.Client.Addr()) {
		f.deny(c, ev, allowlist.ReasonSourceNotAllowed, nil)
		return
	}

	reason, victim, timeout := f.gate.admit(s, &cfg.limits, true, cfg.HelloTimeout, start.UnixNano())
	if reason != "" {
		f.deny(c, ev, reason, nil)
		return
	}
	defer f.gate.release(s)
	if victim != nil {
		victim.client.Close() // its reader fails and records hello_evicted
	}
	c.SetReadDeadline(start.Add(timeout))
	in, err := f.identify(c, cfg, &ev) // a child box's level-identity header first (identity.go)
	var raw []byte
	var hello clienthello.Hello
	if err == nil {
		raw, hello, err = clienthello.Read(in, cfg.MaxHelloSize)
	}
	c.SetReadDeadline(time.Time{})
	evicted := f.gate.helloDone(s)
	ev.SNI, ev.ALPN, ev.ECH, ev.HelloSize = hello.SNI, hello.ALPN, hello.ECH, hello.Size
	if evicted {
		f.deny(c, ev, ReasonHelloEvicted, nil)
		return
	}
	if err != nil {
		reason, alert := ReasonMalformedHello, alertDecodeError
		var he *clienthello.Error
		if errors.As(err, &he) {
			reason = he.Reason
		}
		switch reason {
		case ReasonNotTLS, ReasonHelloTimeout, ReasonClientClosed:
			alert = nil // not a TLS peer, or nobody left to tell
		case ReasonNoSNI, ReasonBadSNI:
			alert = alertUnrecognized
		case levelid.ReasonRefused, levelid.ReasonBadHeader:
			alert = nil // it spoke PROXY, not TLS
		case levelid.ReasonLoop, levelid.ReasonHopLimit:
			alert = alertAccessDenied
		}
		f.deny(c, ev, reason, alert)
		return
	}

	d := Decide(&pol, hello.SNI, pm.Listen, ev.Client.Addr(), cfg.Parent.IsValid())
	ev.Rule, ev.Via = d.Rule, d.Via
	if d.Verdict != allowlist.Allow {
		f.deny(c, ev, d.Reason, alertAccessDenied)
		return
	}
	f.forward(cfg, s, ev, d, hello.SNI, pm.Upstream, start, raw, alertInternalError)
}

// forward connects an allowed stream (TLS, HTTP or CONNECT) to its destination, watching
// the client meanwhile, and splices it, replaying raw and what the client sent while it
// waited. failed is sent to the client when no destination answers.
func (f *Forwarder) forward(cfg *Config, s *stream, ev Event, d Decision, name allowlist.Name, upstreamPort uint16, start time.Time, raw, failed []byte) {
	c := s.client
	f.mu.Lock()
	s.sni, s.via = name, d.Via
	f.mu.Unlock()
	ctx, cancel := context.WithCancel(f.ctx)
	w := watchClient(c, cancel)
	up, upAddr, reason, err := f.connect(ctx, cfg, &ev, d, name, upstreamPort)
	early, left := w.stop()
	cancel()
	ev.Upstream = upAddr
	if left != nil {
		if up != nil {
			up.Close()
		}
		f.log.Debug("client left before the upstream answered", "id", ev.ID, "sni", string(name), "err", left)
		f.deny(c, ev, ReasonClientClosed, nil)
		return
	}
	raw = append(raw, early...)
	if err != nil {
		f.log.Debug("upstream failed", "id", ev.ID, "sni", string(name), "err", err)
		f.deny(c, ev, reason, failed)
		return
	}
	f.splice(cfg, s, ev, d, up, start, raw)
}

// serveRoute handles one connection to a static TCP route: no hello, no decision.
func (f *Forwarder) serveRoute(c net.Conn, cfg *Config, r Route) {
	start := time.Now()
	ev := Event{ID: f.cfg.NewID(), Client: remoteAddrPort(c), Port: r.Port, Via: ViaTCP}
	s := &stream{client: c, port: r.Port, src: ev.Client.Addr(), via: ViaTCP}
	f.track(s)
	defer f.untrack(s)
	if pol := cfg.policy(); !pol.Admits(ev.Client.Addr()) {
		f.deny(c, ev, allowlist.ReasonSourceNotAllowed, nil)
		return
	}
	if reason, _, _ := f.gate.admit(s, &cfg.limits, false, 0, start.UnixNano()); reason != "" {
		f.deny(c, ev, reason, nil)
		return
	}
	defer f.gate.release(s)
	d := Decision{Verdict: allowlist.Allow, Reason: ReasonRoute, Via: ViaTCP, To: r.To}
	// Not watched as serveTLS does: on a plain TCP route a client may well send first and
	// close its side, and all of it goes upstream once connected.
	up, upAddr, reason, err := f.connect(f.ctx, cfg, &ev, d, "", r.To.Port)
	ev.Upstream = upAddr
	if err != nil {
		f.log.Debug("upstream failed", "id", ev.ID, "route", r.To.String(), "err", err)
		f.deny(c, ev, reason, nil)
		return
	}
	f.splice(cfg, s, ev, d, up, start, nil)
}

// connect resolves the destination and dials the addresses in order until one answers, or
// until ctx ends. It notes the time each step took in ev.
func (f *Forwarder) connect(ctx context.Context, cfg *Config, ev *Event, d Decision, sni allowlist.Name, upstreamPort uint16) (net.Conn, netip.AddrPort, allowlist.Reason, error) {
	begin := time.Now()
	addrs, reason, err := f.destinations(ctx, cfg, d, sni, upstreamPort)
	ev.Resolve = time.Since(begin)
	if err != nil {
		return nil, netip.AddrPort{}, reason, err
	}
	begin = time.Now()
	defer func() { ev.Dial = time.Since(begin) }()
	var errs []error
	for _, a := range addrs {
		dctx, cancel := context.WithTimeout(ctx, cfg.DialTimeout)
		up, err := f.cfg.Dial(dctx, "tcp", a.String())
		cancel()
		if err == nil {
			return up, a, "", nil
		}
		errs = append(errs, err)
		if outOfDescriptors(err) {
			reason = ReasonNoDescriptors // no other address will fare better
			break
		}
	}
	return nil, addrs[len(addrs)-1], reason, errors.Join(errs...)
}

// splice records the open stream, replays the bytes read before the decision, and hands the
// stream to a splice.Pipe, which runs on without the serving goroutine (an idle stream parks
// and holds nothing but its sockets) and records the close when it ends. Nothing reaches the
// upstream before the open record is kept.
func (f *Forwarder) splice(cfg *Config, s *stream, ev Event, d Decision, up net.Conn, start time.Time, replay []byte) {
	ev.Kind, ev.Verdict, ev.Reason = EventOpen, d.eventVerdict(), d.Reason
	poller, _ := netpoll.Shared() // nil if epoll fails: streams then wait in their goroutines
	p := splice.New(s.client, up, splice.Config{Idle: cfg.idleTimeout(s.port), Poller: poller})
	f.mu.Lock()
	s.pipe = p
	closing := f.closed && f.ctx.Err() != nil
	f.wg.Add(1) // done when the pipe ends
	f.mu.Unlock()
	if err := f.emit(ev); err != nil {
		f.log.Warn("closing a stream that could not be recorded", "id", ev.ID, "client", ev.Client.String(), "err", err)
		p.Close(string(ReasonAuditUnavailable))
	} else if closing {
		p.Close(string(ReasonShutdown))
	} else if len(replay) > 0 {
		// Replay the hello exactly as the device sent it; the upstream (or the parent box,
		// which reads it again) completes the handshake with the device.
		hdr := f.announce(cfg, s.client, &ev, d) // the level-identity header, to a parent only
		n, err := up.Write(append(hdr, replay...))
		if err != nil {
			p.Close(string(ReasonUpstreamFailed))
		}
		ev.BytesUp = int64(max(n-len(hdr), 0))
	}
	s.spliced = true
	p.Start(func(r splice.Result) {
		ev.BytesUp += r.Up
		ev.BytesDown = r.Down
		ev.Kind, ev.Reason, ev.Duration = EventClose, endReason(r), time.Since(start)
		f.emit(ev)
		f.gate.free(s)
		f.forget(s)
		f.wg.Done()
	})
}

// endReason is why a spliced stream ended, for its close record.
func endReason(r splice.Result) allowlist.Reason {
	switch {
	case r.Why != "":
		return allowlist.Reason(r.Why)
	case r.Idle:
		return ReasonIdleTimeout
	}
	return ReasonEOF
}

// deny closes a connection that was not forwarded, after an optional TLS alert. A denial
// for a flood reason past the first few of its source in a period is not recorded but
// counted for the source's LimitEvent.
func (f *Forwarder) deny(c net.Conn, ev Event, reason allowlist.Reason, alert []byte) {
	if alert != nil {
		c.SetWriteDeadline(time.Now().Add(time.Second))
		c.Write(alert)
	}
	if tc, ok := c.(*net.TCPConn); ok && alert == nil {
		tc.SetLinger(0) // nothing to say: free the socket at once
	}
	c.Close()
	if floodReason(reason) && ev.SNI == "" && !f.gate.record(ev.Client.Addr(), time.Now()) {
		return
	}
	ev.Kind, ev.Verdict, ev.Reason = EventDeny, VerdictDeny, reason
	f.emit(ev)
}

func remoteAddrPort(c net.Conn) netip.AddrPort {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		ap := a.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	return netip.AddrPort{}
}
