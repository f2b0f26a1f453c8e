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
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lnm-project/lnm/adminapi"
	"github.com/lnm-project/lnm/allowlist"
	"github.com/lnm-project/lnm/audit"
	"github.com/lnm-project/lnm/config"
	"github.com/lnm-project/lnm/dhcp"
	"github.com/lnm-project/lnm/forwarder"
	"github.com/lnm-project/lnm/levelid"
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
	cfg      *config.Config
	auditLog *audit.Log // nil: audit off
	store    *store.Store
	trail    *trail
	metrics  *boxMetrics
	current  *plan // what the data path runs now; replaced by reloads under mu
	version  string
	started  time.Time
	log      *slog.Logger // the logger; the audit trail is auditLog

	dns      []*resolver.Server
	fwds     []*forwarder.Forwarder
	dhcp     *dhcp.Server // nil: no dhcp block
	admin    *adminServer
	metricsS *http.Server

	connIDs atomic.Uint64

	onReload atomic.Pointer[func(done bool, err error)] // see NotifyReload; nil: none

	liveMu sync.Mutex
	live   *liveness // the data path's progress at the last Stalled call; nil before it

	// reloadMu serializes reloads and mode changes; mu guards cfg, current and learn, which
	// status and the admin API read while a reload may replace them.
	reloadMu sync.Mutex
	mu       sync.Mutex
	learn    bool // the running mode; lnm mode changes it without touching the file

	ctx       context.Context // good until Close
	cancel    context.CancelFunc
	storeDone chan struct{}
	closeOnce sync.Once
	closeErr  error
}

// Start builds every component of cfg and binds its ports. On any error nothing stays bound
// and the audit log is closed again.
func Start(cfg *config.Config, log *slog.Logger) (*Runtime, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	rt := &Runtime{cfg: cfg, log: log, version: Version, started: time.Now(), storeDone: make(chan struct{}), learn: cfg.Learn}
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
	if rt.store, err = store.New(store.Config{MaxRecords: cfg.StoreMax, MaxBytes: cfg.StoreMemory, MaxAge: cfg.StoreAge, LinkWindow: cfg.LinkWindow}); err != nil {
		return err
	}
	go func() { defer close(rt.storeDone); rt.store.Run(rt.ctx) }()
	box := cfg.Name
	if box == "" {
		box, _ = os.Hostname()
	}
	if cfg.AuditDir != "" {
		rt.auditLog, err = audit.Open(audit.Config{
			Dir:        cfg.AuditDir,
			SyncEvery:  cfg.Fsync,
			SyncAlways: cfg.FsyncAlways,
			MaxAge:     cfg.AuditMaxAge,
			MaxTotal:   cfg.AuditMaxSize,
			Box:        box,
			Level:      cfg.Level,
			Logger:     rt.log,
		})
		if err != nil {
			return err
		}
	}
	rt.metrics = newBoxMetrics(rt.started)
	rt.trail = &trail{box: box, level: cfg.Level, log: rt.auditLog, store: rt.store, failOpen: cfg.AuditFailOpen, metrics: rt.metrics, children: cfg.Children}
	if rt.auditLog != nil {
		rt.trail.seq.Store(rt.auditLog.LastSeq())
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
	// DHCP last of the data path: the DNS server it hands out answers already.
	if cfg.DHCP != nil {
		if rt.dhcp, err = dhcp.New(rt.dhcpConfig(cfg)); err != nil {
			return err
		}
		if err := rt.dhcp.Start(); err != nil {
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
		rt.log.Info("admin API listening", "socket", cfg.Admin)
	}
	if cfg.Metrics != "" {
		ln, err := net.Listen("tcp", cfg.Metrics)
		if err != nil {
			return fmt.Errorf("appliance: metrics: %w", err)
		}
		rt.metricsS = serveMetrics(ln, rt.metrics, rt.log)
		rt.log.Info("metrics listening", "addr", ln.Addr().String())
	}
	rt.metrics.reloaded(true)
	return rt.trail.configChange("start "+rt.version+" "+cfg.File, listHash(rt.current.list), Caller{})
}

// newConnID numbers connections across every forwarder and reload of this process.
func (rt *Runtime) newConnID() uint64 { return rt.connIDs.Add(1) }

func (rt *Runtime) registerGauges() {
	m := rt.metrics
	m.gaugeFunc("lnm_store_records", "Audit records held in memory.", func() float64 { return float64(rt.store.Stats().Records()) })
	m.gaugeFunc("lnm_store_bytes", "Estimated memory of the records held.", func() float64 { return float64(rt.store.Stats().Bytes) })
	for _, reason := range []allowlist.Reason{forwarder.ReasonTooManyConns, forwarder.ReasonConnRateLimited, forwarder.ReasonTooManyPending, forwarder.ReasonHelloEvicted} {
		m.limitedFunc(string(reason), func() (n uint64) {
			for _, f := range rt.fwds {
				n += f.Limited(reason)
			}
			return n
		})
	}
	m.counterFunc("lnm_connections_summarized_total", "Denied connections counted in conn_limited summary records instead of recorded one by one.", func() float64 {
		var n uint64
		for _, f := range rt.fwds {
			n += f.Unrecorded()
		}
		return float64(n)
	})
	m.counterFunc("lnm_dns_tcp_refused_total", "DNS TCP connections closed at once: the client held dns_tcp_per_source.", func() float64 {
		var n uint64
		for _, s := range rt.dns {
			n += s.TCPRefused()
		}
		return float64(n)
	})
	m.counterFunc("lnm_accept_errors_total", "Failed accepts on the proxy, tcp and DNS TCP ports (out of file descriptors, most often).", func() float64 {
		var n uint64
		for _, f := range rt.fwds {
			n += f.AcceptErrors()
		}
		for _, d := range rt.dns {
			n += d.AcceptErrors()
		}
		return float64(n)
	})
	if rt.auditLog == nil {
		return
	}
	m.gaugeFunc("lnm_audit_queue_depth", "Audit records waiting for the disk.", func() float64 { return float64(rt.auditLog.Stats().QueueDepth) })
	m.gaugeFunc("lnm_audit_fsync_seconds", "Latency of the audit log's last fsync.", func() float64 { return rt.auditLog.Stats().LastSync.Seconds() })
	m.counterFunc("lnm_audit_write_errors_total", "Failed audit writes and fsyncs.", func() float64 { return float64(rt.auditLog.Stats().WriteErrors) })
	m.counterFunc("lnm_audit_refused_total", "Records refused while the audit log was failing or full.", func() float64 {
		s := rt.auditLog.Stats()
		return float64(s.RefusedFailing + s.RefusedFull)
	})
	m.gaugeFunc("lnm_audit_healthy", "1 while audit records are being written, else 0.", func() float64 {
		if rt.auditLog.Healthy() != nil {
			return 0
		}
		return 1
	})
}

// plan is what one configuration asks of the data path: the list, the upstream client and
// the settings of each DNS server and forwarder, one per listen address.
type plan struct {
	list     *allowlist.List
	upstream *resolver.Upstream // nil when nothing is resolved upstream
	servers  []netip.AddrPort   // upstream's servers and zones, to reuse it (and its cache)
	zones    []resolver.Zone
	dns      []resolver.Config
	fwds     []forwarder.Config
}

// plan derives the data path's settings from cfg without binding anything. Hooks and
// connection ids come from the runtime, so they survive reloads; so does the upstream client
// and its cache, when prev (the running plan, nil at start) used the same servers and zones.
func (rt *Runtime) plan(cfg *config.Config, learn bool, prev *plan) (*plan, error) {
	list, err := cfg.List()
	if err != nil {
		return nil, err
	}
	pl := &plan{list: list}
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
	if needsUpstream(cfg) {
		servers := cfg.Upstream
		if len(servers) == 0 {
			if servers, err = resolver.ServersFromResolvConf(resolvConf); err != nil {
				return nil, fmt.Errorf("appliance: no upstream in %s and %w", cfg.File, err)
			}
		}
		pl.servers, pl.zones = servers, zones
		if prev != nil && prev.upstream != nil && slices.Equal(prev.servers, servers) && slices.EqualFunc(prev.zones, zones, sameZone) {
			pl.upstream = prev.upstream
		} else {
			pl.upstream = resolver.NewUpstream(resolver.UpstreamConfig{Servers: servers, Zones: zones, Logger: rt.log})
		}
	}
	routes := make([]forwarder.Route, len(cfg.Routes))
	for i, r := range cfg.Routes {
		routes[i] = forwarder.Route{Port: r.Port, To: r.To}
	}
	ports := make([]forwarder.PortMap, len(cfg.Proxies))
	for i, p := range cfg.Proxies {
		ports[i] = forwarder.PortMap{Listen: p.Listen, Upstream: p.Upstream, Front: p.Front}
	}
	self := selfAddrs(cfg.Listen)
	for _, addr := range cfg.Listen {
		if cfg.DNSPort != 0 {
			pl.dns = append(pl.dns, resolver.Config{
				Addr:    netip.AddrPortFrom(addr, cfg.DNSPort),
				Answer4: answer4,
				Answer6: answer6,
				TTL:     cfg.TTL,
				List:    list,
				Sources: cfg.Sources,
				Zones:   zones,
				Learn:   learn,
				Logger:  rt.log,
				OnQuery: rt.trail.onQuery,
				Flush:   rt.trail.flush,

				DenyRefused: cfg.DenyRefused,

				RateLimit: cfg.DNSRateLimit,
				OnLimited: rt.trail.onLimited,

				MaxTCPPerSource: limitOrNone(cfg.DNSTCPPerSource),
				Children:        cfg.Children,
			})
		}
		if len(ports) == 0 && len(routes) == 0 {
			continue
		}
		pl.fwds = append(pl.fwds, forwarder.Config{
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
			IdleTimeouts: cfg.IdleTimeouts,
			MaxPending:   cfg.MaxPending,
			MaxConns:     limitOrNone(cfg.MaxConns),
			ConnRate:     limitOrNone(cfg.ConnRateLimit),
			Children:     cfg.Children,
			Identity:     levelIdentity(cfg, rt.trail.box),
			OnLimited:    rt.trail.onConnLimited,

			MaxConnsPerSrc: limitOrNone(cfg.MaxConnsPerSource),
			Learn:          learn,
			DrainRevoked:   cfg.DrainRevoked,
			Logger:         rt.log,
			OnEvent:        rt.trail.onConn,
			NewID:          rt.newConnID,
		})
		if pl.upstream != nil { // never a typed nil in the interface
			pl.fwds[len(pl.fwds)-1].Resolver = pl.upstream
		}
	}
	return pl, nil
}

// levelIdentity is the box's side of `level_identity`; nil when it is off.
func levelIdentity(cfg *config.Config, box string) *levelid.Box {
	if cfg.LevelIdentity == 0 {
		return nil
	}
	return &levelid.Box{Name: box, Level: cfg.Level, MaxHops: cfg.LevelIdentity, Children: cfg.Children}
}

// limitOrNone turns a config limit, where zero is `off`, into the data path's, where zero
// is the default and a negative number none.
func limitOrNone(n int) int {
	if n == 0 {
		return -1
	}
	return n
}

func sameZone(a, b resolver.Zone) bool { return a.Name == b.Name && slices.Equal(a.Servers, b.Servers) }

// build makes the data-path components of the first configuration without binding anything.
func (rt *Runtime) build() error {
	pl, err := rt.plan(rt.cfg, rt.cfg.Learn, nil)
	if err != nil {
		return err
	}
	rt.current = pl
	for _, c := range pl.dns {
		s, err := resolver.New(c)
		if err != nil {
			return err
		}
		rt.dns = append(rt.dns, s)
	}
	for _, c := range pl.fwds {
		f, err := forwarder.New(c)
		if err != nil {
			return err
		}
		rt.fwds = append(rt.fwds, f)
	}
	return nil
}

// needsUpstream reports whether any stream may need a real name resolved: every allowed SNI
// at the top level, and named destinations of routes and rules at any level.
func needsUpstream(cfg *config.Config) bool {
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
func (rt *Runtime) listeners() []adminapi.Listener {
	var out []adminapi.Listener
	for _, s := range rt.dns {
		out = append(out, adminapi.Listener{Proto: "dns/udp+tcp", Addr: s.Addr().String()})
	}
	for _, f := range rt.fwds {
		addrs := f.Addrs()
		for i, a := range addrs {
			proto := "tcp-route"
			if ps := rt.config().Proxies; i < len(ps) {
				proto = map[forwarder.Front]string{forwarder.FrontTLS: "proxy", forwarder.FrontHTTP: "http", forwarder.FrontConnect: "connect"}[ps[i].Front]
			}
			out = append(out, adminapi.Listener{Proto: proto, Addr: a.String()})
		}
	}
	cfg := rt.config()
	if cfg.Admin != "" {
		out = append(out, adminapi.Listener{Proto: "admin", Addr: cfg.Admin})
	}
	if cfg.Metrics != "" {
		out = append(out, adminapi.Listener{Proto: "metrics", Addr: cfg.Metrics})
	}
	if rt.dhcp != nil {
		out = append(out, adminapi.Listener{Proto: "dhcp", Addr: cfg.DHCP.Interface + " " + rt.dhcp.Settings().ServerID.String() + ":67"})
	}
	return out
}

// counters sums the decisions since start from the metrics.
func (rt *Runtime) counters() adminapi.Counters {
	var c adminapi.Counters
	m := rt.metrics
	m.dnsQueries.each(func(values labelKey, n uint64) { // qtype, verdict
		c.DNSQueries += n
		if values[1] != audit.VerdictAllow {
			c.DNSDenied += n
		}
	})
	c.DNSRateLimited = counterValue(m.dnsSlipped) + counterValue(m.dnsDropped)
	m.conns.each(func(values labelKey, n uint64) { // port, verdict, reason
		c.Conns += n
		if values[1] != audit.VerdictAllow {
			c.ConnsDenied += n
		}
	})
	c.BytesUp, c.BytesDown = counterValue(m.bytesUp), counterValue(m.bytesDown)
	return c
}

// Close stops the forwarders (draining live streams for a bounded time, so their close
// records are kept), then DNS, records the stop, closes the admin API and metrics, and
// finally writes and fsyncs the audit log: a graceful stop loses no record. It is idempotent.
func (rt *Runtime) Close() error {
	rt.closeOnce.Do(func() {
		var errs []error
		if rt.dhcp != nil {
			errs = append(errs, rt.dhcp.Close())
		}
		for _, f := range rt.fwds {
			errs = append(errs, f.Close())
		}
		for _, s := range rt.dns {
			errs = append(errs, s.Close())
		}
		if rt.trail != nil {
			errs = append(errs, rt.trail.configChange("stop", listHash(rt.currentList()), Caller{}))
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
		if rt.auditLog != nil {
			errs = append(errs, rt.auditLog.Close())
		}
		rt.closeErr = errors.Join(errs...)
	})
	return rt.closeErr
}
