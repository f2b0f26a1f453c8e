package forwarder

import (
	"context"
	"fmt"
	"net/netip"
	"slices"

	"github.com/lnm-project/lnm/allowlist"
)

var (
	thisNetwork = netip.MustParsePrefix("0.0.0.0/8")     // RFC 1122 "this host on this network"
	sharedSpace = netip.MustParsePrefix("100.64.0.0/10") // RFC 6598 carrier-grade NAT
	broadcast   = netip.MustParseAddr("255.255.255.255")
)

// classify says why a resolved address must not be dialed for a name that came from a device,
// or "" if it may be. A public name that resolves to loopback, link-local (including cloud
// metadata at 169.254.169.254), private or shared address space, multicast or the box itself
// is a rebinding or pivot attempt: only a rule's explicit `to` may send streams inside.
func classify(a netip.Addr, self []netip.Addr) allowlist.Reason {
	a = a.Unmap()
	switch {
	case !a.IsValid(), a.IsUnspecified(), a.IsLoopback(), a.IsLinkLocalUnicast(),
		a.IsMulticast(), a.IsPrivate(), thisNetwork.Contains(a), sharedSpace.Contains(a),
		a == broadcast, slices.Contains(self, a):
		return ReasonPrivateTarget
	}
	return ""
}

// destinations lists the addresses to try for an allowed stream, in order, and the reason
// to give if none can be used. Every address is final: the dial uses it as it is, so the
// name is never resolved again between the check and the connection.
func (f *Forwarder) destinations(ctx context.Context, cfg *Config, d Decision, sni allowlist.Name, upstreamPort uint16) ([]netip.AddrPort, allowlist.Reason, error) {
	switch d.Via {
	case ViaParent:
		return []netip.AddrPort{netip.AddrPortFrom(cfg.Parent, upstreamPort)}, ReasonParentFailed, nil
	case ViaTo, ViaTCP:
		return f.targetAddrs(ctx, cfg, d.To)
	}
	addrs, err := f.lookup(ctx, cfg, sni)
	if err != nil {
		return nil, ReasonResolveFailed, err
	}
	var out []netip.AddrPort
	var refused []netip.Addr
	for _, a := range addrs {
		if classify(a, cfg.Self) != "" {
			refused = append(refused, a)
			continue
		}
		out = append(out, netip.AddrPortFrom(a.Unmap(), upstreamPort))
	}
	if len(out) == 0 {
		return nil, ReasonPrivateTarget, fmt.Errorf("%s resolves only to addresses the box refuses to dial: %v", sni, refused)
	}
	return out, ReasonUpstreamFailed, nil
}

// targetAddrs resolves a configured destination. The operator wrote it, so inside addresses
// are fine; only addresses nothing can be sent to are dropped.
func (f *Forwarder) targetAddrs(ctx context.Context, cfg *Config, t allowlist.Target) ([]netip.AddrPort, allowlist.Reason, error) {
	if t.Addr.IsValid() {
		return []netip.AddrPort{netip.AddrPortFrom(t.Addr, t.Port)}, ReasonUpstreamFailed, nil
	}
	addrs, err := f.lookup(ctx, cfg, t.Name)
	if err != nil {
		return nil, ReasonResolveFailed, err
	}
	var out []netip.AddrPort
	for _, a := range addrs {
		if a.IsValid() && !a.IsUnspecified() && !a.IsMulticast() {
			out = append(out, netip.AddrPortFrom(a.Unmap(), t.Port))
		}
	}
	if len(out) == 0 {
		return nil, ReasonResolveFailed, fmt.Errorf("%s has no usable address", t.Name)
	}
	return out, ReasonUpstreamFailed, nil
}

func (f *Forwarder) lookup(ctx context.Context, cfg *Config, n allowlist.Name) ([]netip.Addr, error) {
	if cfg.Resolver == nil {
		return nil, fmt.Errorf("no upstream resolver configured to look up %s", n)
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.DialTimeout)
	defer cancel()
	return cfg.Resolver.Lookup(ctx, n)
}
