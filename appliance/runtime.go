package appliance

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"

	"github.com/lnm-project/lnm/forwarder"
	"github.com/lnm-project/lnm/resolver"
)

// resolvConf is where upstream resolvers come from when the config names none.
const resolvConf = "/etc/resolv.conf"

// Runtime is one configuration brought to life: a DNS server and a forwarder on each listen
// address, sharing one allow list and one upstream client.
type Runtime struct {
	log  *slog.Logger
	dns  []*resolver.Server
	fwds []*forwarder.Forwarder
}

// Start builds every component of cfg and binds its ports. On any error nothing stays bound.
func Start(cfg *Config, log *slog.Logger) (*Runtime, error) {
	rt, err := build(cfg, log)
	if err != nil {
		return nil, err
	}
	for _, s := range rt.dns {
		if err := s.Start(); err != nil {
			rt.Close()
			return nil, err
		}
	}
	for _, f := range rt.fwds {
		if err := f.Start(); err != nil {
			rt.Close()
			return nil, err
		}
	}
	return rt, nil
}

// build makes the components without binding anything.
func build(cfg *Config, log *slog.Logger) (*Runtime, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	list, err := cfg.List()
	if err != nil {
		return nil, err
	}
	rt := &Runtime{log: log}

	var answer4, answer6 netip.Addr
	for _, a := range cfg.Listen {
		switch {
		case a.IsUnspecified():
		case a.Is4():
			answer4 = a
		default:
			answer6 = a
		}
	}
	zones := make([]resolver.Zone, len(cfg.Zones))
	for i, z := range cfg.Zones {
		zones[i] = resolver.Zone{Name: z.Name, Servers: z.Forward}
	}

	var upstream *resolver.Upstream
	if needsUpstream(cfg) {
		servers := cfg.Upstream
		if len(servers) == 0 {
			servers, err = resolver.ServersFromResolvConf(resolvConf)
			if err != nil {
				return nil, fmt.Errorf("appliance: no upstream in %s and %w", cfg.File, err)
			}
		}
		upstream = resolver.NewUpstream(resolver.UpstreamConfig{
			Servers: servers,
			Zones:   zones,
			Logger:  log,
		})
	}

	self := selfAddrs(cfg.Listen)
	routes := make([]forwarder.Route, len(cfg.Routes))
	for i, r := range cfg.Routes {
		routes[i] = forwarder.Route{Port: r.Port, To: r.To}
	}
	ports := make([]forwarder.PortMap, len(cfg.Proxies))
	for i, p := range cfg.Proxies {
		ports[i] = forwarder.PortMap{Listen: p.Listen, Upstream: p.Upstream}
	}

	for _, addr := range cfg.Listen {
		if cfg.DNSPort != 0 {
			s, err := resolver.New(resolver.Config{
				Addr:    netip.AddrPortFrom(addr, cfg.DNSPort),
				Answer4: answer4,
				Answer6: answer6,
				TTL:     cfg.TTL,
				List:    list,
				Sources: cfg.Sources,
				Zones:   zones,
				Logger:  log,
			})
			if err != nil {
				return nil, err
			}
			rt.dns = append(rt.dns, s)
		}
		if len(ports) == 0 && len(routes) == 0 {
			continue
		}
		fc := forwarder.Config{
			Listen:       addr,
			Ports:        ports,
			Routes:       routes,
			Sources:      cfg.Sources,
			List:         list,
			Parent:       cfg.Parent,
			Self:         self,
			HelloTimeout: cfg.HelloTimeout,
			DialTimeout:  cfg.DialTimeout,
			IdleTimeout:  cfg.IdleTimeout,
			Logger:       log,
		}
		if upstream != nil {
			fc.Resolver = upstream
		}
		f, err := forwarder.New(fc)
		if err != nil {
			return nil, err
		}
		rt.fwds = append(rt.fwds, f)
	}
	return rt, nil
}

// needsUpstream reports whether any stream may need a real name resolved: every allowed SNI
// at the top level, and named destinations of routes and rules at any level.
func needsUpstream(cfg *Config) bool {
	if !cfg.Parent.IsValid() && len(cfg.Proxies) > 0 {
		return true
	}
	for _, r := range cfg.Routes {
		if r.To.Name != "" {
			return true
		}
	}
	for _, r := range cfg.Rules {
		if r.To.Name != "" {
			return true
		}
	}
	return false
}

// selfAddrs lists the box's own addresses, which a resolved name must never lead back to:
// the listen addresses, and every interface address when listening on a wildcard.
func selfAddrs(listen []netip.Addr) []netip.Addr {
	var out []netip.Addr
	wildcard := false
	for _, a := range listen {
		if a.IsUnspecified() {
			wildcard = true
			continue
		}
		out = append(out, a)
	}
	if !wildcard {
		return out
	}
	ifAddrs, err := net.InterfaceAddrs()
	if err != nil {
		return out
	}
	for _, ia := range ifAddrs {
		if p, err := netip.ParsePrefix(ia.String()); err == nil {
			out = append(out, p.Addr().Unmap())
		}
	}
	return out
}

// Close stops the forwarders (draining live streams for a bounded time), then DNS. It is
// idempotent.
func (rt *Runtime) Close() error {
	var errs []error
	for _, f := range rt.fwds {
		errs = append(errs, f.Close())
	}
	for _, s := range rt.dns {
		errs = append(errs, s.Close())
	}
	return errors.Join(errs...)
}
