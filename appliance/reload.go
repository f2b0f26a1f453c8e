package appliance

import (
	"fmt"
	"slices"
	"strings"

	"github.com/lnm-project/lnm/allowlist"
)

// config returns the running configuration. Callers must not modify it.
func (rt *Runtime) config() *Config {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return rt.cfg
}

// currentList returns the running allow list.
func (rt *Runtime) currentList() *allowlist.List {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return rt.current.list
}

// Learn reports whether the box runs in learn mode.
func (rt *Runtime) Learn() bool {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return rt.learn
}

// Reload applies a new configuration while the box runs: a new allow list, sources, parent,
// upstreams, zones, TTL, timeouts, modes, and added or removed proxy and tcp ports. Listeners
// that stay keep their sockets; live connections the new list still allows are untouched and
// those it no longer allows are closed (or left to finish with on_revoke drain). On any error
// the running configuration keeps serving unchanged. uid is who asked (nil: the box itself,
// for SIGHUP). Settings that need new sockets of another kind or a new audit log (listen,
// dns, admin, metrics, audit and store settings) are refused with a message naming them.
func (rt *Runtime) Reload(next *Config, uid *int) error {
	rt.reloadMu.Lock()
	defer rt.reloadMu.Unlock()
	cur := rt.config()
	learn := rt.Learn()
	if next.Learn != cur.Learn {
		learn = next.Learn // the file's mode changed: it wins over `lnm mode`
	}
	err := rt.apply(cur, next, learn)
	if err != nil {
		rt.metrics.reloaded(false)
		rt.slog.Error("reload refused; the running configuration keeps serving", "config", next.File, "err", err)
		return err
	}
	rt.metrics.reloaded(true)
	list := rt.currentList()
	change := "reload " + next.File + " " + ruleDiff(cur, next)
	rt.slog.Info("reloaded", "config", next.File, "rules", list.Len(), "hash", listHash(list), "change", change)
	return rt.trail.configChange(change, listHash(list), uid)
}

// SetLearn switches between learn and enforce mode at run time, without touching the file.
// The mode holds until the next reload whose file changes its own `mode`.
func (rt *Runtime) SetLearn(learn bool, uid *int) error {
	rt.reloadMu.Lock()
	defer rt.reloadMu.Unlock()
	cur := rt.config()
	if err := rt.apply(cur, cur, learn); err != nil {
		return err
	}
	mode := "enforce"
	if learn {
		mode = "learn"
	}
	rt.slog.Info("mode changed", "mode", mode)
	return rt.trail.configChange("mode "+mode, listHash(rt.currentList()), uid)
}

// apply reconfigures every component for next, rolling back those already changed when one
// fails. rt.reloadMu is held.
func (rt *Runtime) apply(cur, next *Config, learn bool) error {
	if err := restartOnly(cur, next); err != nil {
		return err
	}
	rt.mu.Lock()
	old := rt.current
	rt.mu.Unlock()
	pl, err := rt.plan(next, learn, old)
	if err != nil {
		return err
	}
	if len(pl.fwds) != len(rt.fwds) || len(pl.dns) != len(rt.dns) {
		return fmt.Errorf("appliance: reload: %s adds or removes all proxy and tcp ports or DNS; restart lnm to apply it", next.File)
	}
	for i, f := range rt.fwds {
		if err := f.Reconfigure(pl.fwds[i]); err != nil {
			for j := range i {
				rt.fwds[j].Reconfigure(old.fwds[j])
			}
			return fmt.Errorf("appliance: reload: %w", err)
		}
	}
	for i, s := range rt.dns {
		if err := s.Reconfigure(pl.dns[i]); err != nil {
			for j := range rt.fwds {
				rt.fwds[j].Reconfigure(old.fwds[j])
			}
			for j := range i {
				rt.dns[j].Reconfigure(old.dns[j])
			}
			return fmt.Errorf("appliance: reload: %w", err)
		}
	}
	rt.mu.Lock()
	rt.cfg, rt.current, rt.learn = next, pl, learn
	rt.mu.Unlock()
	return nil
}

// restartOnly names the settings a reload cannot change.
func restartOnly(cur, next *Config) error {
	var changed []string
	check := func(name string, same bool) {
		if !same {
			changed = append(changed, name)
		}
	}
	check("listen", slices.Equal(cur.Listen, next.Listen))
	check("dns", cur.DNSPort == next.DNSPort)
	check("admin", cur.Admin == next.Admin)
	check("metrics", cur.Metrics == next.Metrics)
	check("audit", cur.AuditDir == next.AuditDir)
	check("fsync", cur.Fsync == next.Fsync && cur.FsyncAlways == next.FsyncAlways)
	check("audit_max_age", cur.AuditMaxAge == next.AuditMaxAge)
	check("audit_max_size", cur.AuditMaxSize == next.AuditMaxSize)
	check("on_audit_failure", cur.AuditFailOpen == next.AuditFailOpen)
	check("link_window", cur.LinkWindow == next.LinkWindow)
	check("store_max", cur.StoreMax == next.StoreMax)
	check("store_age", cur.StoreAge == next.StoreAge)
	check("dns_rate_limit", cur.DNSRateLimit == next.DNSRateLimit)
	check("name", cur.Name == next.Name)
	check("level", cur.Level == next.Level)
	check("children", slices.Equal(cur.Children, next.Children))
	if len(changed) > 0 {
		return fmt.Errorf("appliance: reload: %s changed %s; restart lnm to apply it", next.File, strings.Join(changed, ", "))
	}
	return nil
}

// ruleDiff summarizes how the rules changed, for the reload record.
func ruleDiff(cur, next *Config) string {
	text := func(c *Config) []string {
		out := make([]string, len(c.Rules))
		for i := range c.Rules {
			out[i] = c.Rules[i].String()
		}
		slices.Sort(out)
		return out
	}
	a, b := text(cur), text(next)
	var added, removed []string
	for _, r := range b {
		if _, found := slices.BinarySearch(a, r); !found {
			added = append(added, r)
		}
	}
	for _, r := range a {
		if _, found := slices.BinarySearch(b, r); !found {
			removed = append(removed, r)
		}
	}
	if len(added) == 0 && len(removed) == 0 {
		return "(rules unchanged)"
	}
	var parts []string
	for _, r := range added {
		parts = append(parts, "+"+r)
	}
	for _, r := range removed {
		parts = append(parts, "-"+r)
	}
	return "(" + strings.Join(parts, "; ") + ")"
}
