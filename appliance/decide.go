package appliance

import (
	"slices"

	"github.com/lnm-project/lnm/allowlist"
	"github.com/lnm-project/lnm/config"
	"github.com/lnm-project/lnm/forwarder"
	"github.com/lnm-project/lnm/resolver"
)

// Answer is how a box running a config decides one DNS question or connection: what `lnm
// allow test` prints. The decision itself comes from the functions the running box calls,
// resolver.Decide and forwarder.Decide, with the same policy.
type Answer struct {
	Allowed bool
	// Learned: learn mode lets it through, though the list denies it (Reason says why).
	Learned bool
	Reason  allowlist.Reason
	// Rule decided, or for a denial is the nearest rule that matched the name.
	Rule *allowlist.Rule
	// Via says where an allowed connection goes (parent, direct, to, tcp).
	Via forwarder.Via
	// Route is the static tcp route that takes every connection on the port, whatever the
	// name; NoProxy says nothing listens on the port at all.
	Route   *config.Route
	NoProxy bool
	// Zones are the stub zones the name is in: DNS answers for it come from their servers.
	Zones []config.Zone
}

// Decide decides q (Port 0: a DNS question; Source invalid: a device the rules' `from` does
// not name) as a box running cfg would.
func Decide(cfg *config.Config, q allowlist.Query) (Answer, error) {
	list, err := cfg.List()
	if err != nil {
		return Answer{}, err
	}
	pol := allowlist.Policy{List: list, Sources: cfg.Sources, Learn: cfg.Learn}
	var a Answer
	for _, z := range cfg.Zones {
		if q.Name == z.Name || q.Name.IsBelow(z.Name) {
			a.Zones = append(a.Zones, z)
		}
	}
	if q.Port == 0 {
		v, reason, rule := resolver.Decide(&pol, q.Name, q.Source)
		a.Allowed, a.Learned, a.Reason, a.Rule = v == resolver.VerdictAllow || v == resolver.VerdictWouldDeny, v == resolver.VerdictWouldDeny, reason, rule
		return a, nil
	}
	if q.Source.IsValid() && !pol.Admits(q.Source) {
		a.Reason = allowlist.ReasonSourceNotAllowed
		return a, nil
	}
	if !proxies(cfg, q.Port) {
		for i := range cfg.Routes {
			if r := &cfg.Routes[i]; r.Port == q.Port {
				a.Allowed, a.Reason, a.Route, a.Via = true, forwarder.ReasonRoute, r, forwarder.ViaTCP
				return a, nil
			}
		}
		a.NoProxy = true
		return a, nil
	}
	d := forwarder.Decide(&pol, q.Name, q.Port, q.Source, cfg.Parent.IsValid())
	a.Allowed, a.Learned, a.Reason, a.Rule, a.Via = d.Verdict == allowlist.Allow, d.Learned, d.Reason, d.Rule, d.Via
	return a, nil
}

// proxies reports whether a proxy listens on port, or a connect port may tunnel to it (any
// port no tcp route holds: a CONNECT names its own).
func proxies(cfg *config.Config, port uint16) bool {
	connect := false
	for _, m := range cfg.Proxies {
		if m.Listen == port {
			return true
		}
		connect = connect || m.Front == forwarder.FrontConnect
	}
	return connect && !slices.ContainsFunc(cfg.Routes, func(r config.Route) bool { return r.Port == port })
}
