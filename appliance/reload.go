package appliance

import (
	"fmt"
	"slices"
	"strings"

	"github.com/lnm-project/lnm/allowlist"
	"github.com/lnm-project/lnm/config"
	"github.com/lnm-project/lnm/forwarder"
	"github.com/lnm-project/lnm/resolver"
)

// config returns the running configuration. Callers must not modify it.
func (rt *Runtime) config() *config.Config {
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
// those it no longer allows are closed (or left to finish with on_revoke drain). The change
// is one checked swap (see apply): on any error the running configuration keeps serving
// unchanged, and the refusal is logged and recorded in the audit trail. A configuration equal
// to the running one touches nothing and is recorded as unchanged. who is who asked (zero: the
// box itself, for SIGHUP). Settings that need new sockets of another kind or a new audit log
// (listen, dns, admin, metrics, audit and store settings) are refused with a message naming
// them.
func (rt *Runtime) Reload(next *config.Config, who Caller) (err error) {
	rt.reloadMu.Lock()
	defer rt.reloadMu.Unlock()
	if hook := rt.onReload.Load(); hook != nil {
		(*hook)(false, nil)
		defer func() { (*hook)(true, err) }()
	}
	cur := rt.config()
	learn := rt.Learn()
	if next.Learn != cur.Learn {
		learn = next.Learn // the file's mode changed: it wins over `lnm mode`
	}
	res, err := rt.apply(cur, next, learn)
	if err != nil {
		rt.metrics.reloaded(false)
		rt.log.Error("reload refused; the running configuration keeps serving", "config", next.File, "err", err)
		rt.recordRefusal("reload-failed "+next.File+": "+err.Error(), who)
		return err
	}
	rt.metrics.reloaded(true)
	list := rt.currentList()
	if res.unchanged {
		rt.log.Info("reload: configuration unchanged; nothing touched", "config", next.File, "rules", list.Len(), "hash", listHash(list))
		return rt.trail.configChange("reload "+next.File+" (unchanged)", listHash(list), who)
	}
	change := "reload " + next.File + " " + ruleDiff(cur, next)
	rt.log.Info("reloaded", "config", next.File, "rules", list.Len(), "hash", listHash(list), "revoked", res.revoked, "change", change)
	return rt.trail.configChange(change, listHash(list), who)
}

// NotifyReload registers fn to be called as each Reload begins (done false) and when it
// has ended (done true, with Reload's result), on the reloading goroutine, whoever asked
// for it: SIGHUP, the admin API's reload, or an allow edit. A service manager's notify
// protocol wants both ends. Nil removes it.
func (rt *Runtime) NotifyReload(fn func(done bool, err error)) {
	if fn == nil {
		rt.onReload.Store(nil)
		return
	}
	rt.onReload.Store(&fn)
}

// SetLearn switches between learn and enforce mode at run time, without touching the file.
// The mode holds until the next reload whose file changes its own `mode`. Asking for the
// running mode touches nothing.
func (rt *Runtime) SetLearn(learn bool, who Caller) error {
	rt.reloadMu.Lock()
	defer rt.reloadMu.Unlock()
	mode := "enforce"
	if learn {
		mode = "learn"
	}
	cur := rt.config()
	res, err := rt.apply(cur, cur, learn)
	if err != nil {
		rt.log.Error("mode change refused; the running mode stays", "mode", mode, "err", err)
		rt.recordRefusal("mode "+mode+" failed: "+err.Error(), who)
		return err
	}
	if res.unchanged {
		rt.log.Info("mode unchanged; nothing touched", "mode", mode)
		return rt.trail.configChange("mode "+mode+" (unchanged)", listHash(rt.currentList()), who)
	}
	rt.log.Info("mode changed", "mode", mode, "revoked", res.revoked)
	return rt.trail.configChange("mode "+mode, listHash(rt.currentList()), who)
}

// recordRefusal puts a refused change in the audit trail, with the hash of the list that
// keeps serving. If even that record cannot be kept, the logger says so: the refusal itself
// was logged by the caller, and the caller's error is what the asker gets.
func (rt *Runtime) recordRefusal(change string, who Caller) {
	if err := rt.trail.configChange(change, listHash(rt.currentList()), who); err != nil {
		rt.log.Error("a refused configuration change could not be recorded in the audit trail", "change", change, "err", err)
	}
}

// applied is what apply did.
type applied struct {
	unchanged bool // the configuration equalled the running one: no component was touched
	revoked   int  // live streams closed because the new configuration no longer allows them
}

// apply makes next, in mode learn, the running configuration as one checked swap. The data
// path's settings are planned first; then every component prepares its part, checking it and
// binding the ports it adds but changing nothing it serves; only when all have accepted does
// each commit, which cannot fail: the DNS servers first, then the forwarders, which revoke
// the streams the new list no longer allows. On any error the prepared parts are dropped and
// nothing has changed, so there is nothing to roll back.
//
// A next equal to cur in every setting (config.Changed, where rule origins count: a rule that
// moved to another line is recorded under its new origin), in mode and in upstream
// servers (which may come from resolv.conf) changes nothing, and no component is touched.
// rt.reloadMu is held.
func (rt *Runtime) apply(cur, next *config.Config, learn bool) (applied, error) {
	changed := config.Changed(cur, next)
	if restart := config.RestartOnly(changed); len(restart) > 0 {
		return applied{}, fmt.Errorf("appliance: reload: %s changed %s; restart lnm to apply it", next.File, strings.Join(restart, ", "))
	}
	rt.mu.Lock()
	old, oldLearn := rt.current, rt.learn
	rt.mu.Unlock()
	pl, err := rt.plan(next, learn, old)
	if err != nil {
		return applied{}, err
	}
	if learn == oldLearn && pl.upstream == old.upstream && len(changed) == 0 {
		return applied{unchanged: true}, nil
	}
	if len(pl.fwds) != len(rt.fwds) || len(pl.dns) != len(rt.dns) {
		return applied{}, fmt.Errorf("appliance: reload: %s adds or removes all proxy and tcp ports or DNS; restart lnm to apply it", next.File)
	}

	fwds := make([]*forwarder.Prepared, 0, len(rt.fwds))
	abort := func() {
		for _, p := range fwds {
			p.Abort()
		}
	}
	for i, f := range rt.fwds {
		p, err := f.Prepare(pl.fwds[i])
		if err != nil {
			abort()
			return applied{}, fmt.Errorf("appliance: reload: %w", err)
		}
		fwds = append(fwds, p)
	}
	dns := make([]*resolver.Prepared, 0, len(rt.dns))
	for i, s := range rt.dns {
		p, err := s.Prepare(pl.dns[i])
		if err != nil {
			abort()
			return applied{}, fmt.Errorf("appliance: reload: %w", err)
		}
		dns = append(dns, p)
	}

	rt.mu.Lock()
	rt.cfg, rt.current, rt.learn = next, pl, learn
	rt.mu.Unlock()
	for _, p := range dns {
		p.Commit()
	}
	var res applied
	for _, p := range fwds {
		res.revoked += p.Commit()
	}
	return res, nil
}

// ruleDiff summarizes how the rules changed, for the reload record.
func ruleDiff(cur, next *config.Config) string {
	text := func(c *config.Config) []string {
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
