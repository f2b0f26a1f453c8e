package config

// The directives of the lnm block, as a table. Adding a directive is one entry here, one field
// in Config (its comment says what the zero value does), and one golden file in
// testdata/config; cross-field checks go in validate.go, and the runtime reads the field where
// it builds the data path (appliance's plan).

import (
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"time"

	"github.com/lnm-project/lnm/audit"
	"github.com/lnm-project/lnm/forwarder"
	"github.com/lnm-project/lnm/resolver"
	"github.com/lnm-project/lnm/store"
)

// Defaults that do not belong to one component: where the box keeps its socket and its log.
// The others come from the package that owns the setting (resolver, forwarder, audit, store).
const (
	DefaultAdmin    = "/run/lnm/admin.sock"
	DefaultAuditDir = "/var/lib/lnm/audit"
	// DefaultConsoleDir holds the web console's users file and generated certificate.
	DefaultConsoleDir = "/var/lib/lnm/console"
)

// directive is one entry of the table.
type directive struct {
	name string
	// parse reads the directive's arguments into p.c; the current token is the last argument.
	// Errors are *ConfigError at the directive's line (p.Errf).
	parse func(p *parser, args []string) error
	// block: the directive takes a { ... } block, which parse reads. Others are refused one.
	block bool
	// repeat: the directive may appear more than once (allow, zone, tcp).
	repeat bool
	// def sets the default on a Config; nil: the zero value is the default.
	def func(c *Config)
	// summary writes the effective setting for `lnm check`, a line per key (s.set); it may
	// write nothing (a setting that only matters with another one).
	summary func(c *Config, s *summary)
	// value is what the directive set, to tell whether two configs differ in it.
	value func(c *Config) any
	// reload: a running box applies a change of this directive by reload. Others need new
	// sockets of another kind or a new log, and a reload that changes them is refused by name.
	reload bool
}

// directives in the order `lnm check` prints them.
var directives = []directive{
	{
		name: "level", parse: (*parser).level,
		summary: func(c *Config, s *summary) { s.set("level", strconv.Itoa(c.Level)) },
		value:   func(c *Config) any { return c.Level },
	},
	{
		name: "name",
		parse: func(p *parser, args []string) (err error) {
			p.c.Name, err = p.oneArg("name", "a box name", args)
			return err
		},
		summary: func(c *Config, s *summary) { s.set("name", orNone(c.Name, "(host name at run time)")) },
		value:   func(c *Config) any { return c.Name },
	},
	{
		name: "listen", parse: (*parser).listen,
		summary: func(c *Config, s *summary) { s.set("listen", c.listenText()) },
		value:   func(c *Config) any { return c.Listen },
	},
	{
		name: "dns", parse: (*parser).dns,
		def:     func(c *Config) { c.DNSPort = resolver.DefaultPort },
		summary: func(c *Config, s *summary) { s.set("dns", portOrOff(c.DNSPort)) },
		value:   func(c *Config) any { return c.DNSPort },
	},
	{
		name: "proxy", parse: (*parser).proxy, reload: true,
		summary: func(c *Config, s *summary) { s.set("proxy", orNone(c.portsText(forwarder.FrontTLS), "none")) },
		value:   func(c *Config) any { return c.portsText(forwarder.FrontTLS) },
	},
	{
		name: "http", reload: true,
		parse: func(p *parser, args []string) error { return p.ports("http", forwarder.FrontHTTP, args) },
		summary: func(c *Config, s *summary) {
			if t := c.portsText(forwarder.FrontHTTP); t != "" {
				s.set("http", t+"  (plain HTTP by Host, one request per connection)")
			}
		},
		value: func(c *Config) any { return c.portsText(forwarder.FrontHTTP) },
	},
	{
		name: "connect", reload: true,
		parse: func(p *parser, args []string) error { return p.ports("connect", forwarder.FrontConnect, args) },
		summary: func(c *Config, s *summary) {
			if t := c.portsText(forwarder.FrontConnect); t != "" {
				s.set("connect", t+"  (HTTP CONNECT proxy; rule ports are the CONNECT's ports)")
			}
		},
		value: func(c *Config) any { return c.portsText(forwarder.FrontConnect) },
	},
	{
		name: "parent", parse: (*parser).parent, reload: true,
		summary: func(c *Config, s *summary) {
			if c.Parent.IsValid() {
				s.set("parent", c.Parent.String())
			} else {
				s.set("parent", "none (top level: names are resolved through upstream)")
			}
		},
		value: func(c *Config) any { return c.Parent },
	},
	{
		name: "upstream", reload: true,
		parse: func(p *parser, args []string) (err error) {
			p.c.Upstream, err = p.servers("upstream", args)
			return err
		},
		summary: func(c *Config, s *summary) {
			s.set("upstream", orNone(joinAddrPorts(c.Upstream), "(from /etc/resolv.conf at run time)"))
		},
		value: func(c *Config) any { return c.Upstream },
	},
	{
		name: "sources", reload: true,
		parse: func(p *parser, args []string) (err error) {
			p.c.Sources, err = p.prefixes("sources", args)
			return err
		},
		summary: func(c *Config, s *summary) { s.set("sources", orNone(joinPrefixes(c.Sources), "any")) },
		value:   func(c *Config) any { return c.Sources },
	},
	{
		name: "children",
		parse: func(p *parser, args []string) (err error) {
			p.c.Children, err = p.prefixes("children", args)
			return err
		},
		summary: func(c *Config, s *summary) {
			if len(c.Children) > 0 {
				s.set("children", joinPrefixes(c.Children))
			}
		},
		value: func(c *Config) any { return c.Children },
	},
	{
		name: "level_identity", parse: (*parser).levelIdentity, reload: true,
		summary: func(c *Config, s *summary) {
			if c.LevelIdentity > 0 {
				s.set("level_identity", fmt.Sprintf("on, %d hops (a PROXY v2 header to the parent; read from children, refused from devices)", c.LevelIdentity))
			}
		},
		value: func(c *Config) any { return c.LevelIdentity },
	},
	{
		name: "ttl", parse: (*parser).ttl, reload: true,
		def:     func(c *Config) { c.TTL = resolver.DefaultTTL },
		summary: func(c *Config, s *summary) { s.set("ttl", duration(c.TTL)) },
		value:   func(c *Config) any { return c.TTL },
	},
	timeoutDirective("hello_timeout", forwarder.DefaultHelloTimeout, true, func(c *Config) *time.Duration { return &c.HelloTimeout }),
	timeoutDirective("dial_timeout", forwarder.DefaultDialTimeout, true, func(c *Config) *time.Duration { return &c.DialTimeout }),
	{
		name: "idle_timeout", parse: (*parser).idleTimeout, reload: true,
		def: func(c *Config) { c.IdleTimeout = forwarder.DefaultIdleTimeout },
		summary: func(c *Config, s *summary) {
			text := duration(c.IdleTimeout)
			for _, port := range slices.Sorted(maps.Keys(c.IdleTimeouts)) {
				text += fmt.Sprintf(" %d=%s", port, duration(c.IdleTimeouts[port]))
			}
			s.set("idle_timeout", text)
		},
		value: func(c *Config) any { return [2]any{c.IdleTimeout, c.IdleTimeouts} },
	},
	{
		name: "admin",
		parse: func(p *parser, args []string) (err error) {
			p.c.Admin, err = p.pathOrOff("admin", "the path of the admin socket", args)
			return err
		},
		def:     func(c *Config) { c.Admin = DefaultAdmin },
		summary: func(c *Config, s *summary) { s.set("admin", orNone(c.Admin, "off")) },
		value:   func(c *Config) any { return c.Admin },
	},
	{
		name: "console", parse: (*parser).console,
		summary: func(c *Config, s *summary) { s.set("console", c.Console.text()) },
		value:   func(c *Config) any { return c.Console },
	},
	{
		name: "metrics", parse: (*parser).metrics,
		summary: func(c *Config, s *summary) { s.set("metrics", orNone(c.Metrics, "off")) },
		value:   func(c *Config) any { return c.Metrics },
	},
	{
		name: "audit",
		parse: func(p *parser, args []string) (err error) {
			p.c.AuditDir, err = p.pathOrOff("audit", "the audit log directory", args)
			return err
		},
		def:     func(c *Config) { c.AuditDir = DefaultAuditDir },
		summary: func(c *Config, s *summary) { s.set("audit", orNone(c.AuditDir, "off (records kept in memory only)")) },
		value:   func(c *Config) any { return c.AuditDir },
	},
	{
		name: "fsync", parse: (*parser).fsync,
		def: func(c *Config) { c.Fsync = audit.DefaultSyncEvery },
		summary: func(c *Config, s *summary) {
			switch {
			case c.AuditDir == "":
			case c.FsyncAlways:
				s.set("fsync", "always")
			default:
				s.set("fsync", duration(c.Fsync))
			}
		},
		value: func(c *Config) any { return [2]any{c.Fsync, c.FsyncAlways} },
	},
	{
		name: "audit_max_age",
		parse: func(p *parser, args []string) (err error) {
			p.c.AuditMaxAge, err = p.timeout("audit_max_age", args)
			return err
		},
		def: func(c *Config) { c.AuditMaxAge = audit.DefaultMaxAge },
		summary: func(c *Config, s *summary) {
			if c.AuditDir != "" {
				s.set("audit_max_age", duration(c.AuditMaxAge))
			}
		},
		value: func(c *Config) any { return c.AuditMaxAge },
	},
	{
		name: "audit_max_size",
		parse: func(p *parser, args []string) (err error) {
			p.c.AuditMaxSize, err = p.size("audit_max_size", args)
			return err
		},
		def: func(c *Config) { c.AuditMaxSize = audit.DefaultMaxTotal },
		summary: func(c *Config, s *summary) {
			if c.AuditDir != "" {
				s.set("audit_max_size", sizeText(c.AuditMaxSize))
			}
		},
		value: func(c *Config) any { return c.AuditMaxSize },
	},
	{
		name: "on_audit_failure", parse: (*parser).onAuditFailure,
		summary: func(c *Config, s *summary) {
			if c.AuditFailOpen {
				s.set("on_audit_failure", "allow (keep serving when records cannot be written)")
			} else {
				s.set("on_audit_failure", "closed (refuse what cannot be audited)")
			}
		},
		value: func(c *Config) any { return c.AuditFailOpen },
	},
	{
		name: "mode", reload: true,
		parse: func(p *parser, args []string) (err error) {
			p.c.Learn, err = p.choice("mode", args, "enforce", "learn")
			return err
		},
		summary: func(c *Config, s *summary) {
			if c.Learn {
				s.set("mode", "learn (nothing is blocked; denials are recorded as would-deny)")
			} else {
				s.set("mode", "enforce")
			}
		},
		value: func(c *Config) any { return c.Learn },
	},
	{
		name: "deny", reload: true,
		parse: func(p *parser, args []string) (err error) {
			p.c.DenyRefused, err = p.choice("deny", args, "nxdomain", "refused")
			return err
		},
		summary: func(c *Config, s *summary) {
			if c.DenyRefused {
				s.set("deny", "refused (names not on the list are answered REFUSED, not NXDOMAIN)")
			}
		},
		value: func(c *Config) any { return c.DenyRefused },
	},
	{
		name: "on_revoke", reload: true,
		parse: func(p *parser, args []string) (err error) {
			p.c.DrainRevoked, err = p.choice("on_revoke", args, "revoke", "drain")
			return err
		},
		summary: func(c *Config, s *summary) {
			if c.DrainRevoked {
				s.set("on_revoke", "drain (connections a reload no longer allows may finish)")
			} else {
				s.set("on_revoke", "revoke (connections a reload no longer allows are closed)")
			}
		},
		value: func(c *Config) any { return c.DrainRevoked },
	},
	timeoutDirective("link_window", store.DefaultLinkWindow, false, func(c *Config) *time.Duration { return &c.LinkWindow }),
	{
		name: "store_max",
		parse: func(p *parser, args []string) (err error) {
			p.c.StoreMax, err = p.count("store_max", args)
			return err
		},
		def:     func(c *Config) { c.StoreMax = store.DefaultMaxRecords },
		summary: func(c *Config, s *summary) { s.set("store_max", strconv.Itoa(c.StoreMax)) },
		value:   func(c *Config) any { return c.StoreMax },
	},
	timeoutDirective("store_age", store.DefaultMaxAge, false, func(c *Config) *time.Duration { return &c.StoreAge }),
	{
		name: "store_memory",
		parse: func(p *parser, args []string) (err error) {
			p.c.StoreMemory, err = p.size("store_memory", args)
			return err
		},
		def:     func(c *Config) { c.StoreMemory = store.DefaultMaxBytes },
		summary: func(c *Config, s *summary) { s.set("store_memory", sizeText(c.StoreMemory)) },
		value:   func(c *Config) any { return c.StoreMemory },
	},
	limitDirective("dns_rate_limit", resolver.DefaultRateLimit, false, func(c *Config) *int { return &c.DNSRateLimit }, "UDP queries a second per client"),
	limitDirective("dns_tcp_per_source", resolver.DefaultMaxTCPPerSource, false, func(c *Config) *int { return &c.DNSTCPPerSource },
		"DNS TCP connections at once per client"+perChild),
	limitDirective("max_conns", forwarder.DefaultMaxConns, true, func(c *Config) *int { return &c.MaxConns },
		"connections open at once, per listen address"),
	limitDirective("max_conns_per_source", forwarder.DefaultMaxConnsPerSrc, true, func(c *Config) *int { return &c.MaxConnsPerSource },
		"connections open at once per device"+perChild),
	limitDirective("conn_rate_limit", forwarder.DefaultConnRate, true, func(c *Config) *int { return &c.ConnRateLimit },
		"new connections a second per device, bursts of twice as many"+perChild),
	{
		name: "max_pending",
		parse: func(p *parser, args []string) (err error) {
			p.c.MaxPending, err = p.count("max_pending", args)
			return err
		},
		def: func(c *Config) { c.MaxPending = forwarder.DefaultMaxPending },
		summary: func(c *Config, s *summary) {
			if c.MaxPending != forwarder.DefaultMaxPending {
				s.set("max_pending", strconv.Itoa(c.MaxPending)+" connections waiting for their ClientHello")
			}
		},
		value: func(c *Config) any { return c.MaxPending },
	},
	{
		// dhcp needs a new socket on an interface: a reload that changes it is refused.
		name: "dhcp", parse: (*parser).dhcp, block: true,
		summary: dhcpSummary,
		value:   func(c *Config) any { return c.DHCP },
	},
	{
		name: "zone", parse: (*parser).zone, block: true, repeat: true, reload: true,
		summary: func(c *Config, s *summary) {
			if len(c.Zones) == 0 {
				s.set("zone", "none")
			}
			for _, z := range c.Zones {
				s.set("zone", fmt.Sprintf("%s forward %s  # %s", z.Name, joinAddrPorts(z.Forward), z.Origin))
			}
		},
		value: func(c *Config) any { return c.Zones },
	},
	{
		name: "tcp", parse: (*parser).route, repeat: true, reload: true,
		summary: func(c *Config, s *summary) {
			if len(c.Routes) == 0 {
				s.set("tcp", "none")
			}
			for _, r := range c.Routes {
				s.set("tcp", fmt.Sprintf("%d to %s  # %s", r.Port, r.To, r.Origin))
			}
		},
		value: func(c *Config) any { return c.Routes },
	},
	{
		name: "allow", parse: (*parser).allow, block: true, repeat: true, reload: true,
		summary: func(c *Config, s *summary) { s.rules(c) },
		value: func(c *Config) any {
			keys := make([]string, len(c.Rules))
			for i := range c.Rules {
				keys[i] = c.Rules[i].String() + " " + c.Rules[i].Origin
			}
			return keys
		},
	},
}

// timeoutDirective is a directive that sets one duration, with a default.
func timeoutDirective(name string, def time.Duration, reload bool, field func(*Config) *time.Duration) directive {
	return directive{
		name: name, reload: reload,
		parse: func(p *parser, args []string) (err error) {
			*field(p.c), err = p.timeout(name, args)
			return err
		},
		def:     func(c *Config) { *field(c) = def },
		summary: func(c *Config, s *summary) { s.set(name, duration(*field(c))) },
		value:   func(c *Config) any { return *field(c) },
	}
}

// perChild says how a per-device limit applies to a child box (children).
var perChild = fmt.Sprintf(" (%dx for a child box)", forwarder.DefaultChildFactor)

// limitDirective is a directive that sets a limit, `NAME N` or `NAME off` (zero), with a
// default.
func limitDirective(name string, def int, reload bool, field func(*Config) *int, what string) directive {
	return directive{
		name: name, reload: reload,
		parse: func(p *parser, args []string) (err error) {
			*field(p.c), err = p.countOrOff(name, args)
			return err
		},
		def: func(c *Config) { *field(c) = def },
		summary: func(c *Config, s *summary) {
			if n := *field(c); n > 0 {
				s.set(name, strconv.Itoa(n)+" "+what)
			} else {
				s.set(name, "off")
			}
		},
		value: func(c *Config) any { return *field(c) },
	}
}

// directiveByName indexes the table for the parser.
var directiveByName = func() map[string]*directive {
	m := make(map[string]*directive, len(directives))
	for i := range directives {
		m[directives[i].name] = &directives[i]
	}
	return m
}()

// Changed lists the directives whose settings differ between a and b, in table order. The
// allow list counts as changed when a rule or the line it was written on changed.
func Changed(a, b *Config) []string {
	var out []string
	for i := range directives {
		d := &directives[i]
		if !reflect.DeepEqual(d.value(a), d.value(b)) {
			out = append(out, d.name)
		}
	}
	return out
}

// RestartOnly lists the directives of changed that a reload cannot apply.
func RestartOnly(changed []string) []string {
	var out []string
	for _, name := range changed {
		if d := directiveByName[name]; d != nil && !d.reload {
			out = append(out, name)
		}
	}
	return out
}
