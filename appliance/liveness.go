package appliance

import (
	"errors"
	"fmt"
	"strings"

	"github.com/lnm-project/lnm/forwarder"
	"github.com/lnm-project/lnm/resolver"
)

// liveness is the data path's progress at the last Stalled call, one snapshot per DNS
// server and forwarder (their number never changes while the runtime lives: a reload that
// would change it is refused).
type liveness struct {
	dns  []resolver.Progress
	fwds []forwarder.Progress
}

// Stalled compares the data path's progress now with the previous call's and reports which
// loop made none: a DNS server whose UDP socket held datagrams at both calls while its read
// loop took none, or whose queries were being answered at both while none finished; a
// forwarder whose accept queues held connections at both while no accept loop took one.
// It sends no traffic (so it writes no audit record and cannot be refused by sources) and
// takes no lock the data path holds, so it answers even when that path is wedged. An idle
// box never looks stalled, and neither does a busy one that keeps up. The first call only
// takes the snapshot. The systemd watchdog calls it every half interval and kicks only on
// nil.
func (rt *Runtime) Stalled() error {
	now := liveness{
		dns:  make([]resolver.Progress, len(rt.dns)),
		fwds: make([]forwarder.Progress, len(rt.fwds)),
	}
	for i, s := range rt.dns {
		now.dns[i] = s.Progress()
	}
	for i, f := range rt.fwds {
		now.fwds[i] = f.Progress()
	}
	rt.liveMu.Lock()
	prev := rt.live
	rt.live = &now
	rt.liveMu.Unlock()
	if prev == nil {
		return nil
	}
	var errs []error
	for i, s := range rt.dns {
		if err := now.dns[i].Stalled(prev.dns[i]); err != nil {
			errs = append(errs, fmt.Errorf("dns %s: %w", s.Addr(), err))
		}
	}
	for i, f := range rt.fwds {
		if err := now.fwds[i].Stalled(prev.fwds[i]); err != nil {
			errs = append(errs, fmt.Errorf("proxy on %s: %w", f.Listen(), err))
		}
	}
	return errors.Join(errs...)
}

// Summary is one line for a service manager's status: level, rules, listeners and mode,
// e.g. "level 3, 12 rules, 4 listeners, enforce".
func (rt *Runtime) Summary() string {
	mode := "enforce"
	if rt.Learn() {
		mode = "learn"
	}
	parts := []string{
		fmt.Sprintf("level %d", rt.config().Level),
		plural(rt.currentList().Len(), "rule"),
		plural(len(rt.listeners()), "listener"),
		mode,
	}
	return strings.Join(parts, ", ")
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}
