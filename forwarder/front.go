package forwarder

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/netip"
	"time"

	"github.com/lnm-project/lnm/allowlist"
	"github.com/lnm-project/lnm/clienthello"
	"github.com/lnm-project/lnm/httpfront"
)

// Front is what a proxy port reads to find the name it decides on. The zero Front is TLS.
type Front uint8

const (
	FrontTLS     Front = iota // the ClientHello's SNI (`proxy`)
	FrontHTTP                 // a plain HTTP request's Host (`http`)
	FrontConnect              // an HTTP CONNECT's host:port and its tunnel's SNI (`connect`)
)

func (p Front) String() string {
	return [...]string{"tls", "http", "connect"}[p]
}

// serveFront serves an http or connect port as serveTLS does a proxy port (same limits,
// decision, dial, splice, records), reading a request head where serveTLS reads a hello.
// http decides on the Host at its own port and replays the head with "Connection: close"
// (one request per connection); connect decides on the CONNECT's host and port, answers
// 200, and needs the tunnel's ClientHello to name the same host. A parent gets the tunnel
// as TLS on the CONNECT's port and decides again.
func (f *Forwarder) serveFront(c net.Conn, cfg *Config, pm PortMap) {
	start := time.Now()
	ev := Event{ID: f.cfg.NewID(), Client: remoteAddrPort(c), Port: pm.Listen, Proto: pm.Front}
	src := ev.Client.Addr()
	s := &stream{client: c, port: pm.Listen, src: src}
	f.track(s)
	defer f.untrack(s)
	pol := cfg.policy()
	if !pol.Admits(src) {
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
		victim.client.Close()
	}
	c.SetReadDeadline(start.Add(timeout)) // one deadline for the head and a CONNECT's hello
	raw, req, err := httpfront.ReadHead(c, pm.Front == FrontConnect, cfg.MaxHelloSize)
	evicted := f.gate.helloDone(s)
	ev.SNI = req.Host()
	var he *httpfront.Error
	switch {
	case evicted:
		f.deny(c, ev, ReasonHelloEvicted, nil)
		return
	case errors.As(err, &he):
		f.deny(c, ev, he.Reason, he.Reply)
		return
	}

	port, upstreamPort := pm.Listen, pm.Upstream
	if pm.Front == FrontConnect {
		port, upstreamPort = req.Port, req.Port
	}
	s.dport = port
	var d Decision
	if req.Addr.IsValid() {
		s.dst = netip.AddrPortFrom(req.Addr, port)
		ad := pol.DecideAddr(s.dst, src)
		d = Decision{Verdict: ad.Verdict, Reason: ad.Reason, Rule: ad.Rule, Via: ViaTo}
		if ad.Rule != nil {
			d.To = ad.Rule.To
		}
	} else {
		d = Decide(&pol, req.Name, port, src, cfg.Parent.IsValid())
	}
	ev.Rule, ev.Via = d.Rule, d.Via
	if d.Verdict != allowlist.Allow {
		f.deny(c, ev, d.Reason, httpfront.Denied(cfg.List, &req, port, src))
		return
	}

	failed := httpfront.Reply(502, ReasonUpstreamFailed, "the destination did not answer")
	if pm.Front == FrontHTTP {
		raw = append(httpfront.Forward(raw[:req.Head], &req), raw[req.Head:]...)
	} else {
		failed = nil // the 200 is sent: the tunnel's TLS client learns of a failure by the close
		c.Write(httpfront.Established)
		raw = raw[req.Head:]
		if req.Name != "" {
			var hello clienthello.Hello
			raw, hello, err = clienthello.Read(io.MultiReader(bytes.NewReader(raw), c), cfg.MaxHelloSize)
			ev.ALPN, ev.ECH, ev.HelloSize = hello.ALPN, hello.ECH, hello.Size
			reason := httpfront.ReasonSNIMismatch // ev.SNI stays the CONNECT's name
			if hr := (*clienthello.Error)(nil); errors.As(err, &hr) {
				reason = hr.Reason
			}
			if err != nil || hello.SNI != req.Name {
				f.deny(c, ev, reason, nil)
				return
			}
		}
	}
	c.SetReadDeadline(time.Time{})
	f.forward(cfg, s, ev, d, req.Name, upstreamPort, start, raw, failed)
}
