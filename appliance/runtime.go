package appliance

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lnm-project/lnm/allowlist"
	"github.com/lnm-project/lnm/audit"
	"github.com/lnm-project/lnm/forwarder"
	"github.com/lnm-project/lnm/resolver"
	"github.com/lnm-project/lnm/store"
)

// resolvConf is where upstream resolvers come from when the config names none.
const resolvConf = "/etc/resolv.conf"

// Version is the lnm version the runtime reports in status and the start record; the
// command sets it from its build information.
var Version = "devel"

// Runtime is one configuration brought to life: a DNS server and a forwarder on each listen
// address sharing one allow list and one upstream client, the audit trail (store and log),
// the admin API and the metrics endpoint.
type Runtime struct {
	cfg     *Config
	log     *audit.Log // nil: audit off
	store   *store.Store
	trail   *trail
	metrics *boxMetrics
	list    *allowlist.List
	version string
	started time.Time
	slog    *slog.Logger

	dns      []*resolver.Server
	fwds     []*forwarder.Forwarder
	admin    *adminServer
	metricsS *http.Server

	ctx       context.Context // good until Close
	cancel    context.CancelFunc
	storeDone chan struct{}
	closeOnce sync.Once
	closeErr  error
}

// Start builds every component of cfg and binds its ports. On any error nothing stays bound
// and the audit log is closed again.
func Start(cfg *Config, log *slog.Logger) (*Runtime, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	rt := &Runtime{cfg: cfg, slog: log, version: Version, started: time.Now(), storeDone: make(chan struct{})}
	rt.ctx, rt.cancel = context.WithCancel(context.Background())
	if err := rt.start(); err != nil {
		rt.Close()
		return nil, err
	}
	return rt, nil
}

func (rt *Runtime) start() error {
	cfg := rt.cfg
	var err error
	if rt.list, err = cfg.List(); err != nil {
		return err
	}
	if rt.store, err = store.New(store.Config{MaxRecords: cfg.StoreMax, MaxAge: cfg.StoreAge, LinkWindow: cfg.LinkWindow}); err != nil {
		return err
	}
	go func() { defer close(rt.storeDone); rt.store.Run(rt.ctx) }()
	box := cfg.Name
	if box == "" {
		box, _ = os.Hostname()
	}
	if cfg.AuditDir != "" {
		rt.log, err = audit.Open(audit.Config{
			Dir:        cfg.AuditDir,
			SyncEvery:  cfg.Fsync,
			SyncAlways: cfg.FsyncAlways,
			MaxAge:     cfg.AuditMaxAge,
			MaxTotal:   cfg.AuditMaxSize,
			Box:        box,
			Level:      cfg.Level,
			Logger:     rt.slog,
		})
		if err != nil {
			return err
		}
	}
	rt.metrics = newBoxMetrics(rt.started)
	rt.trail = &trail{box: box, level: cfg.Level, log: rt.log, store: rt.store, failOpen: cfg.AuditFailOpen, metrics: rt.metrics}
	if rt.log != nil {
		rt.trail.seq.Store(rt.log.LastSeq())
	}
	rt.registerGauges()

	if err := rt.build(); err != nil {
		return err
	}
	for _, s := range rt.dns {
		if err := s.Start(); err != nil {
			return err
		}
	}
	for _, f := range rt.fwds {
		if err := f.Start(); err != nil {
			return err
		}
	}
	if cfg.Admin != "" {
		ln, err := listenAdmin(cfg.Admin)
		if err != nil {
			return err
		}
		rt.admin = newAdminServer(rt, ln, cfg.Admin)
		go rt.admin.serve()
		rt.slog.Info("admin API listening", "socket", cfg.Admin)
	}
	if cfg.Metrics != "" {
		ln, err := net.Listen("tcp", cfg.Metrics)
		if err != nil {
			return fmt.Errorf("appliance: metrics: %w", err)
		}
		rt.metricsS = serveMetrics(ln, rt.metrics, func() {}, rt.slog)
		rt.slog.Info("metrics listening", "addr", ln.Addr().String())
	}
	rt.metrics.add(rt.metrics.reloads, 1, "ok")
	return rt.trail.configChange("start "+rt.version+" "+cfg.File, listHash(rt.list), nil)
}

func (rt *Runtime) registerGauges() {
	m := rt.metrics
	m.gaugeFunc("lnm_store_records", "Audit records held in memory.", func() float64 { return float64(rt.store.Stats().Records()) })
	m.gaugeFunc("lnm_store_bytes", "Estimated memory of the records held.", func() float64 { return float64(rt.store.Stats().Bytes) })
	if rt.log == nil {
		return
	}
	m.gaugeFunc("lnm_audit_queue_depth", "Audit records waiting for the disk.", func() float64 { return float64(rt.log.Stats().QueueDepth) })
	m.gaugeFunc("lnm_audit_fsync_seconds", "Latency of the audit log's last fsync.", func() float64 { return rt.log.Stats().LastSync.Seconds() })
	m.counterFunc("lnm_audit_write_errors_total", "Failed audit writes and fsyncs.", func() float64 { return float64(rt.log.Stats().WriteErrors) })
	m.counterFunc("lnm_audit_refused_total", "Records refused while the audit log was failing or full.", func() float64 {
		s := rt.log.Stats()
		return float64(s.RefusedFailing + s.RefusedFull)
	})
	m.gaugeFunc("lnm_audit_healthy", "1 while audit records are being written, else 0.", func() float64 {
		if rt.log.Healthy() != nil {
			return 0
		}
		return 1
	})
}

// build makes the data-path components without binding anything.
func (rt *Runtime) build() error {
	cfg := rt.cfg
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
			var err error
			servers, err = resolver.ServersFromResolvConf(resolvConf)
			if err != nil {
				return fmt.Errorf("appliance: no upstream in %s and %w", cfg.File, err)
			}
		}
		upstream = resolver.NewUpstream(resolver.UpstreamConfig{Servers: servers, Zones: zones, Logger: rt.slog})
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
	var ids atomic.Uint64
	for _, addr := range cfg.Listen {
		if cfg.DNSPort != 0 {
			s, err := resolver.New(resolver.Config{
				Addr:    netip.AddrPortFrom(addr, cfg.DNSPort),
				Answer4: answer4,
				Answer6: answer6,
				TTL:     cfg.TTL,
				List:    rt.list,
				Sources: cfg.Sources,
				Zones:   zones,
				Logger:  rt.slog,
				OnQuery: rt.trail.onQuery,
			})
			if err != nil {
				return err
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
			List:         rt.list,
			Parent:       cfg.Parent,
			Self:         self,
			HelloTimeout: cfg.HelloTimeout,
			DialTimeout:  cfg.DialTimeout,
			IdleTimeout:  cfg.IdleTimeout,
			Logger:       rt.slog,
			OnEvent:      rt.trail.onConn,
			NewID:        func() uint64 { return ids.Add(1) },
		}
		if upstream != nil {
			fc.Resolver = upstream
		}
		f, err := forwarder.New(fc)
		if err != nil {
			return err
		}
		rt.fwds = append(rt.fwds, f)
	}
	return nil
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

// listeners lists the bound sockets for status.
func (rt *Runtime) listeners() []Listener {
	var out []Listener
	for _, s := range rt.dns {
		out = append(out, Listener{Proto: "dns/udp+tcp", Addr: s.Addr().String()})
	}
	for _, f := range rt.fwds {
		addrs := f.Addrs()
		for i, a := range addrs {
			proto := "proxy"
			if i >= len(rt.cfg.Proxies) {
				proto = "tcp-route"
			}
			out = append(out, Listener{Proto: proto, Addr: a.String()})
		}
	}
	if rt.cfg.Admin != "" {
		out = append(out, Listener{Proto: "admin", Addr: rt.cfg.Admin})
	}
	if rt.cfg.Metrics != "" {
		out = append(out, Listener{Proto: "metrics", Addr: rt.cfg.Metrics})
	}
	return out
}

// counters sums the decisions since start from the metrics.
func (rt *Runtime) counters() Counters {
	var c Counters
	m := rt.metrics
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, s := range m.dnsQueries.series {
		n := s.value.Load()
		c.DNSQueries += n
		if s.labelValues[1] != audit.VerdictAllow {
			c.DNSDenied += n
		}
	}
	for _, s := range m.conns.series {
		n := s.value.Load()
		c.Conns += n
		if s.labelValues[1] != audit.VerdictAllow {
			c.ConnsDenied += n
		}
	}
	for _, s := range m.bytes.series {
		if s.labelValues[0] == "up" {
			c.BytesUp += s.value.Load()
		} else {
			c.BytesDown += s.value.Load()
		}
	}
	return c
}

// Close stops the forwarders (draining live streams for a bounded time, so their close
// records are kept), then DNS, records the stop, closes the admin API and metrics, and
// finally writes and fsyncs the audit log: a graceful stop loses no record. It is idempotent.
func (rt *Runtime) Close() error {
	rt.closeOnce.Do(func() {
		var errs []error
		for _, f := range rt.fwds {
			errs = append(errs, f.Close())
		}
		for _, s := range rt.dns {
			errs = append(errs, s.Close())
		}
		if rt.trail != nil {
			errs = append(errs, rt.trail.configChange("stop", listHash(rt.list), nil))
		}
		if rt.admin != nil {
			rt.admin.close()
		}
		if rt.metricsS != nil {
			rt.metricsS.Close()
		}
		rt.cancel()
		if rt.store != nil {
			<-rt.storeDone
		}
		if rt.log != nil {
			errs = append(errs, rt.log.Close())
		}
		rt.closeErr = errors.Join(errs...)
	})
	return rt.closeErr
}
