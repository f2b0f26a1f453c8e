package forwarder

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/lnm-project/lnm/allowlist"
)

// AddrClass names why a resolved address is inside the plant or the box rather than out on
// the internet; the zero value is an ordinary public address.
type AddrClass string

const (
	AddrPublic      AddrClass = ""
	AddrInvalid     AddrClass = "invalid"
	AddrUnspecified AddrClass = "unspecified"  // 0.0.0.0, ::
	AddrThisNetwork AddrClass = "this_network" // 0.0.0.0/8 (RFC 1122)
	AddrLoopback    AddrClass = "loopback"     // 127.0.0.0/8, ::1
	AddrLinkLocal   AddrClass = "link_local"   // 169.254.0.0/16 (cloud metadata too), fe80::/10
	AddrPrivate     AddrClass = "private"      // RFC 1918
	AddrULA         AddrClass = "ula"          // fc00::/7 (RFC 4193)
	AddrCGNAT       AddrClass = "cgnat"        // 100.64.0.0/10 (RFC 6598)
	AddrMulticast   AddrClass = "multicast"
	AddrBroadcast   AddrClass = "broadcast" // 255.255.255.255
	AddrSelf        AddrClass = "self"      // one of the box's own addresses
)

// plant reports whether the class is address space a plant may use for its own hosts
// (RFC 1918, ULA, CGNAT), which a rule's `private` lets a name resolve to. Loopback,
// link-local, the box itself and the rest stay refused.
func (c AddrClass) plant() bool {
	return c == AddrPrivate || c == AddrULA || c == AddrCGNAT
}

var (
	thisNetwork = netip.MustParsePrefix("0.0.0.0/8")
	sharedSpace = netip.MustParsePrefix("100.64.0.0/10")
	broadcast   = netip.MustParseAddr("255.255.255.255")
)

// classify says why a resolved address must not be dialed for a name that came from a device,
// or AddrPublic if it may be. A public name that resolves to loopback, link-local, private or
// shared address space, multicast or the box itself is a rebinding or pivot attempt: only a
// rule's explicit `to` may send streams inside. IPv4-mapped IPv6 addresses are judged as the
// IPv4 address they carry.
func classify(a netip.Addr, self []netip.Addr) AddrClass {
	a = a.Unmap()
	switch {
	case !a.IsValid():
		return AddrInvalid
	case slices.Contains(self, a):
		return AddrSelf
	case a.IsUnspecified():
		return AddrUnspecified
	case thisNetwork.Contains(a):
		return AddrThisNetwork
	case a.IsLoopback():
		return AddrLoopback
	case a.IsLinkLocalUnicast():
		return AddrLinkLocal
	case a.IsPrivate() && a.Is4():
		return AddrPrivate
	case a.IsPrivate():
		return AddrULA
	case sharedSpace.Contains(a):
		return AddrCGNAT
	case a.IsMulticast():
		return AddrMulticast
	case a == broadcast:
		return AddrBroadcast
	}
	return AddrPublic
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
	var refused []string
	private := d.Rule != nil && d.Rule.Private && !d.Learned
	for _, a := range addrs {
		if class := classify(a, cfg.Self); class != AddrPublic && !(private && class.plant()) {
			refused = append(refused, a.String()+" ("+string(class)+")")
			continue
		}
		out = append(out, netip.AddrPortFrom(a.Unmap(), upstreamPort))
	}
	if len(out) == 0 {
		return nil, ReasonPrivateTarget, fmt.Errorf("%s resolves only to addresses the box refuses to dial: %s", sni, strings.Join(refused, ", "))
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
