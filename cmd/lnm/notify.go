package main

// lnm run as a systemd service (Type=notify): sd_notify(3) messages through go-systemd's
// daemon package, which is a no-op without NOTIFY_SOCKET, so a foreground run is unchanged.
//
//   READY=1 + STATUS=      once every listener is bound (appliance.Start returned)
//   RELOADING=1 + MONOTONIC_USEC=, then READY=1 + STATUS=
//                          around every reload: SIGHUP, the admin API's /v1/reload, and the
//                          allow edits that apply through it; READY=1 follows a refused
//                          reload too, since the old configuration keeps serving
//   STOPPING=1             when SIGTERM or SIGINT arrives, before draining
//   WATCHDOG=1             every half WATCHDOG_USEC, only while appliance.Runtime.Stalled
//                          finds the DNS and forwarder loops making progress
//
// Socket activation (LISTEN_FDS) is not supported: lnm binds its own sockets, which it
// needs to do anyway when a reload adds a port, and the unit grants CAP_NET_BIND_SERVICE.

import (
	"context"
	"log/slog"
	"strings"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"

	"github.com/lnm-project/lnm/appliance"
)

// service tells the service manager how the box is doing.
type service struct {
	rt  *appliance.Runtime
	log *slog.Logger
}

// send writes one notify message of newline-separated assignments; without NOTIFY_SOCKET it
// does nothing. A failure is logged, never fatal: the box serves either way.
func (s *service) send(lines ...string) {
	if _, err := daemon.SdNotify(false, strings.Join(lines, "\n")); err != nil {
		s.log.Warn("systemd notify failed", "err", err)
	}
}

// status is the STATUS= line: the runtime's one-line summary, and a note when the last
// reload was refused.
func (s *service) status(note string) string {
	line := "STATUS=" + s.rt.Summary()
	if note != "" {
		line += "; " + note
	}
	return line
}

func (s *service) ready() { s.send(daemon.SdNotifyReady, s.status("")) }

func (s *service) stopping() { s.send(daemon.SdNotifyStopping, "STATUS=stopping") }

// reloadRefused reports a reload that failed before the runtime saw it (the file did not
// parse), so no RELOADING=1 was sent.
func (s *service) reloadRefused() { s.send(s.status("last reload refused, see the log")) }

// reload is the runtime's NotifyReload hook. systemd 253 and later want the CLOCK_MONOTONIC
// time with RELOADING=1, to match it against the READY=1 that ends the reload.
func (s *service) reload(done bool, err error) {
	switch {
	case !done:
		s.send(daemon.SdNotifyReloading, strings.TrimSuffix(daemon.SdNotifyMonotonicUsec(), "\n"))
	case err != nil:
		s.send(daemon.SdNotifyReady, s.status("last reload refused, see the log"))
	default:
		s.ready()
	}
}

// watchdog kicks the service manager's watchdog every half interval while the data path
// makes progress, until ctx ends. It returns at once when the watchdog is off
// (no WATCHDOG_USEC, or one meant for another process). A stalled box is left for systemd
// to kill and restart (Restart=on-failure) once the interval passes without a kick.
func (s *service) watchdog(ctx context.Context) {
	interval, err := daemon.SdWatchdogEnabled(false)
	if err != nil {
		s.log.Warn("systemd watchdog setting ignored", "err", err)
	}
	if interval <= 0 {
		return
	}
	s.rt.Stalled() // the first snapshot
	tick := time.NewTicker(interval / 2)
	defer tick.Stop()
	s.log.Info("systemd watchdog on", "interval", interval.String())
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if err := s.rt.Stalled(); err != nil {
			s.log.Error("watchdog not kicked: the data path made no progress", "err", err)
			continue
		}
		s.send(daemon.SdNotifyWatchdog)
	}
}
