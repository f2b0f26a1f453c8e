package forwarder

import (
	"cmp"
	"errors"
	"fmt"
	"net"
	"slices"

	"github.com/lnm-project/lnm/allowlist"
)

// Prepared is a new config that a Forwarder has checked and made ready to serve, without
// changing anything it serves: the ports the config adds are bound, so that Commit cannot
// fail on a busy port, but accept nothing yet (the kernel queues connections to them), and
// live streams are untouched. A box prepares every component before it commits any, so a
// component that refuses its part leaves every stream and listener as it was.
//
// Exactly one of Commit and Abort must be called; until then the Forwarder refuses another
// Prepare. Close aborts a config still prepared.
type Prepared struct {
	f     *Forwarder
	cfg   Config
	added map[uint16]net.Listener // bound, not yet accepting
	done  bool                    // Commit or Abort ran; guarded by f.mu
}

// Prepare checks cfg as New does and binds the ports it adds. On an error nothing is bound
// and nothing changes. Listen cannot change while the Forwarder runs; the hooks (OnEvent,
// OnLimited, NewID, Dial, Logger) and DrainTimeout stay those given to New. New limits
// apply to new connections: what each source holds already is kept and counted.
func (f *Forwarder) Prepare(cfg Config) (*Prepared, error) {
	cfg.OnEvent, cfg.NewID, cfg.Dial, cfg.Logger = f.cfg.OnEvent, f.cfg.NewID, f.cfg.Dial, f.cfg.Logger
	cfg.OnLimited = f.cfg.OnLimited
	cfg, err := withDefaults(cfg)
	if err != nil {
		return nil, err
	}
	if cfg.Listen != f.cfg.Listen {
		return nil, fmt.Errorf("forwarder: listen address %s cannot change to %s while running", f.cfg.Listen, cfg.Listen)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil, errors.New("forwarder: prepare: closed")
	}
	if f.prepared != nil {
		return nil, errors.New("forwarder: prepare: another config is prepared and neither committed nor aborted")
	}
	var added []uint16
	for _, port := range cfg.ports() {
		if _, ok := f.listeners[port]; !ok && f.started {
			added = append(added, port)
		}
	}
	lns, err := f.bind(added)
	if err != nil {
		return nil, err
	}
	f.prepared = &Prepared{f: f, cfg: cfg, added: lns}
	return f.prepared, nil
}

// Commit makes the prepared config the running one. New connections are decided under it,
// the added ports start accepting and the removed ones stop; listeners on unchanged ports
// keep their sockets. Live streams it still allows are left alone; those it no longer allows
// are closed with ReasonRevoked (an EventClose each) unless DrainRevoked lets them finish.
// Commit cannot fail; it returns how many streams it closed. After Abort, or on a Forwarder
// closed meanwhile, it changes nothing.
func (p *Prepared) Commit() (revoked int) {
	f := p.f
	f.mu.Lock()
	defer f.mu.Unlock()
	if p.done {
		return 0
	}
	p.done, f.prepared = true, nil
	if f.closed {
		p.release()
		return 0
	}
	cfg := &p.cfg
	f.conf.Store(cfg)
	f.serve(p.added)
	want := map[uint16]bool{}
	for _, port := range cfg.ports() {
		want[port] = true
	}
	for port, ln := range f.listeners {
		if !want[port] {
			ln.Close()
			delete(f.listeners, port)
			f.log.Info("stopped listening", "addr", ln.Addr().String())
		}
	}
	f.publishListeners()
	if cfg.DrainRevoked {
		return 0
	}
	for s := range f.conns {
		if s.pipe != nil && !stillAllowed(cfg, s) {
			s.pipe.Close(string(ReasonRevoked))
			revoked++
		}
	}
	return revoked
}

// Abort drops the prepared config: the ports it bound are closed, and nothing else changes.
// After Commit it does nothing.
func (p *Prepared) Abort() {
	p.f.mu.Lock()
	defer p.f.mu.Unlock()
	p.abort()
}

// abort is Abort with f.mu held.
func (p *Prepared) abort() {
	if p.done {
		return
	}
	p.done, p.f.prepared = true, nil
	p.release()
}

// release closes the ports bound for the config. A listener that never accepted has
// nothing to lose, but a failure to close it is logged: it may keep the port taken.
func (p *Prepared) release() {
	for _, ln := range p.added {
		if err := ln.Close(); err != nil {
			p.f.log.Warn("releasing a port bound for a config that was not committed", "addr", ln.Addr().String(), "err", err)
		}
	}
}

// stillAllowed decides a live stream again under cfg, as a new one would be: its source
// first (a route's too), then its port, then the policy.
func stillAllowed(cfg *Config, s *stream) bool {
	pol := cfg.policy()
	if !pol.Admits(s.src) {
		return false
	}
	if s.via == ViaTCP {
		return slices.ContainsFunc(cfg.Routes, func(r Route) bool { return r.Port == s.port })
	}
	if !slices.ContainsFunc(cfg.Ports, func(p PortMap) bool { return p.Listen == s.port }) {
		return false
	}
	if s.dst.IsValid() {
		return pol.DecideAddr(s.dst, s.src).Verdict == allowlist.Allow
	}
	return Decide(&pol, s.sni, cmp.Or(s.dport, s.port), s.src, cfg.Parent.IsValid()).Verdict == allowlist.Allow
}
