// Package config is lnm's configuration language: the Config type, the parser (coredns/caddy's
// caddyfile lexer), validation, the summary `lnm check` prints, and the managed allow file
// (lnm.allow) that `lnm allow` edits. It starts nothing: Parse reads the Corefile-syntax text
// without side effects (no lookups, no listening, no reading /etc/resolv.conf), and Validate
// does the cross-field checks. `lnm check` is exactly those two calls followed by Summary.
package config

import (
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"time"

	"github.com/lnm-project/lnm/allowfile"
	"github.com/lnm-project/lnm/allowlist"
	"github.com/lnm-project/lnm/forwarder"
)

// Config is one box's effective configuration. Parse returns it with every default already
// applied, so the runtime reads the fields as they are; a Config built in code should start
// from Defaults. Each field's comment names its directive and what its zero value does.
type Config struct {
	// File is the name the config was parsed from; it prefixes every error and origin.
	File string

	// Level is the box's level in the plant network (`level N`, 0 to 5). It only labels logs,
	// audit records and the summary. Zero: level 0, which is also the value when absent.
	Level int

	// Name is the box's name in logs and audit records (`name NAME`). Empty: the host name,
	// looked up at run time (never by Parse).
	Name string

	// Listen holds the addresses DNS and the proxies bind to (`listen ADDR...`): at most one
	// IPv4 and one IPv6 address, either of which may be the wildcard 0.0.0.0 or ::. A-records
	// carry the IPv4 address and AAAA-records the IPv6 one; for a wildcard, the local address
	// the query arrived on. Empty: invalid, Validate requires it.
	Listen []netip.Addr

	// DNSPort is the UDP and TCP port of the authoritative DNS server (`dns PORT`).
	// Zero: no DNS server (`dns off`). Parse sets DefaultDNSPort when the directive is absent.
	DNSPort uint16

	// Proxies are the TLS ports routed by SNI (`proxy 443 8883 8443:443`), the plain HTTP
	// ports routed by Host (`http 80`) and the HTTP CONNECT proxy ports (`connect 3128`),
	// told apart by Front. Empty: no listener; names still resolve to the box, but no
	// connection is forwarded.
	Proxies []PortMap

	// Parent is the box one level up (`parent ADDR`): allowed TLS connections are dialed there
	// on the same upstream port, and it decides again. Invalid (zero): this is the top box,
	// which resolves names itself through Upstream.
	Parent netip.Addr

	// Upstream lists the DNS servers for real names (`upstream ADDR[:PORT]...`, port 53 when
	// left out). Without Parent they resolve every SNI; with Parent they resolve only the names
	// in `tcp` routes and `to` targets, since allowed TLS connections go to the parent.
	// Empty: the servers in /etc/resolv.conf, read at run time.
	Upstream []netip.AddrPort

	// Children are the boxes one level down (`children CIDR...`; a bare address is a /32 or
	// /128). Their connections resolved the name at their own level, where the link to the
	// device's query is recorded, so this box does not flag them unlinked. Empty: none.
	Children []netip.Prefix
	// LevelIdentity is `level_identity on [HOPS]`: the hop limit, the most boxes a
	// connection may pass (levelid.DefaultMaxHops without a number). On, the box sends a
	// level-identity header (package levelid) first on every stream to Parent, reads one from
	// Children, and refuses a PROXY header from anyone else. Zero (`off`, the default):
	// no header is sent or read.
	LevelIdentity int

	// Sources limits who may use the box (`sources CIDR...`); a bare address is a /32 or
	// /128. DNS queries from elsewhere are REFUSED and connections closed. Empty: anyone.
	Sources []netip.Prefix

	// TTL is the TTL of synthesized answers and the negative TTL of NXDOMAIN (`ttl 30s`, or
	// bare seconds: `ttl 30`), whole seconds from 1s to 24h. Zero: invalid; Parse sets
	// DefaultTTL when the directive is absent.
	TTL time.Duration

	// HelloTimeout bounds the wait for a full ClientHello, from accept (`hello_timeout`).
	// DialTimeout bounds each upstream dial (`dial_timeout`). IdleTimeout closes a spliced
	// connection after no byte moved in either direction for that long (`idle_timeout`).
	// Zero: invalid; Parse sets DefaultHelloTimeout, DefaultDialTimeout, DefaultIdleTimeout.
	HelloTimeout, DialTimeout, IdleTimeout time.Duration
	// IdleTimeouts overrides IdleTimeout for some listen ports, proxy or tcp route
	// (`idle_timeout 1h 8883=2h`). Nil: IdleTimeout everywhere.
	IdleTimeouts map[uint16]time.Duration

	// Admin is where the admin API listens (`admin PATH`, a Unix socket, mode 0660; `admin
	// off`). Empty: no admin API. Parse sets DefaultAdmin when the directive is absent.
	Admin string
	// Console is the web console (`console ADDR:PORT [dir DIR] [cert CERT KEY]
	// [device_side]`). The zero Console (no Addr) is off.
	Console Console
	// Metrics is the HOST:PORT of the metrics endpoint (`metrics ADDR`; HOST is an IP address
	// or empty for every address). Empty: no metrics endpoint.
	Metrics string
	// AuditDir is the directory of the durable audit log (`audit DIR`; `audit off`). Empty:
	// records are kept in memory only. Parse sets DefaultAuditDir when the directive is absent.
	AuditDir string

	// Fsync is the audit log's group-commit interval (`fsync 100ms`); FsyncAlways syncs
	// every record (`fsync always`). Zero Fsync with FsyncAlways false: invalid; Parse sets
	// DefaultFsync.
	Fsync       time.Duration
	FsyncAlways bool
	// AuditMaxAge and AuditMaxSize bound the audit log on disk (`audit_max_age 2160h`,
	// `audit_max_size 4GiB`): the oldest segments are deleted first. Zero: invalid; Parse sets
	// DefaultAuditMaxAge and DefaultAuditMaxSize.
	AuditMaxAge  time.Duration
	AuditMaxSize int64
	// AuditFailOpen keeps answering and connecting when audit records cannot be written
	// (`on_audit_failure allow`). False (`on_audit_failure closed`, the default): new DNS
	// queries get SERVFAIL and new connections are refused until writing works again.
	AuditFailOpen bool

	// LinkWindow is how far back a connection looks for the DNS query that led to it
	// (`link_window 10m`). StoreMax and StoreAge bound the records held in memory
	// (`store_max 1000000`, `store_age 24h`). Zero: invalid; Parse sets the defaults.
	LinkWindow time.Duration
	StoreMax   int
	StoreAge   time.Duration
	// StoreMemory bounds the memory of the records held (`store_memory 512MiB`), beside
	// StoreMax: whichever is reached first evicts the oldest. Zero: invalid; Parse sets
	// store.DefaultMaxBytes, sized for a 2 GiB box.
	StoreMemory int64

	// DNSRateLimit bounds each client's UDP queries a second (`dns_rate_limit 500`); over
	// it, every second query gets an empty truncated reply (the device retries over TCP)
	// and the rest none, and the audit log gets a summary per client every 10 seconds
	// instead of a record per packet. Zero (`dns_rate_limit off`): no limit.
	DNSRateLimit int

	// MaxPending caps the connections still waiting for their ClientHello, on each listen
	// address (`max_pending 1024`): past it the oldest waiting connection of the device
	// holding the most makes room for a newcomer, or the newcomer is refused with reason
	// too_many_pending. Parse sets forwarder.DefaultMaxPending when the directive is absent.
	MaxPending int
	// MaxConns and MaxConnsPerSource cap the connections open at once on the proxy and tcp
	// ports of each listen address, in all and from one device (`max_conns 10000`,
	// `max_conns_per_source 256`); ConnRateLimit caps a device's new connections a second,
	// with bursts of twice as many (`conn_rate_limit 100`); DNSTCPPerSource caps a client's
	// DNS connections over TCP (`dns_tcp_per_source 16`). Past one, a connection is closed
	// at once. A child box (Children) gets forwarder.DefaultChildFactor times the
	// per-device limits. Zero (`off`): no limit. Parse sets the defaults.
	MaxConns, MaxConnsPerSource, ConnRateLimit, DNSTCPPerSource int

	// Learn is learn mode (`mode learn`): nothing is blocked, and every decision that would
	// have denied is recorded as "would-deny". False (`mode enforce`, the default): the list
	// is enforced.
	Learn bool
	// DenyRefused answers names the list does not allow with REFUSED (`deny refused`), which
	// clients take as "ask another server" and do not cache. False (`deny nxdomain`, the
	// default): NXDOMAIN with the SOA. Either way the query is audited as denied.
	DenyRefused bool
	// DrainRevoked lets live connections that a reload no longer allows finish
	// (`on_revoke drain`). False (`on_revoke revoke`, the default): they are closed and
	// recorded with reason "revoked".
	DrainRevoked bool

	// Rules is the allow list, in the order written (`allow { ... }`, one rule per line; the
	// directive may appear more than once), then, when Load read one, the rules of the managed
	// file (allowfile.PathFor). Each rule's Origin is "FILE:LINE". Empty: every name is denied.
	// Match order is List().Ordered().
	Rules []allowlist.Rule

	// Zones are stub zones whose names are forwarded to the zone's own servers
	// (`zone NAME { forward ADDR[:PORT]... }`). Empty: none.
	Zones []Zone

	// DHCP is the embedded DHCPv4 server for the device network (`dhcp IFACE { ... }`).
	// nil: none; the devices get the box as their DNS server from the plant's DHCP server.
	DHCP *DHCP

	// Routes are static TCP ports forwarding every connection to one destination, without
	// SNI (`tcp PORT HOST:PORT`). Empty: none.
	Routes []Route

	// pos holds the line of each single-valued directive as written, for Validate's errors;
	// lnmLine is the line of the `lnm` block. Both are zero for a Config built in code.
	pos     map[string]int
	lnmLine int
}

// PortMap is one `proxy`, `http` or `connect` port: the box listens on Listen and dials the
// parent or the destination on Upstream (a connect port: on the CONNECT's port). Written as
// "443" (both the same) or "8443:443".
type PortMap struct {
	Listen, Upstream uint16
	// Front is what the port reads to decide: the zero FrontTLS for `proxy`.
	Front forwarder.Front
}

// frontDirective is the directive that declares ports of the front.
func frontDirective(f forwarder.Front) string {
	if f == forwarder.FrontTLS {
		return "proxy"
	}
	return f.String()
}

// String returns the port map in config syntax.
func (p PortMap) String() string {
	if p.Listen == p.Upstream {
		return strconv.Itoa(int(p.Listen))
	}
	return strconv.Itoa(int(p.Listen)) + ":" + strconv.Itoa(int(p.Upstream))
}

// Zone is a stub zone: names at or below Name are forwarded to Forward and the answer relayed.
type Zone struct {
	Name    allowlist.Name
	Forward []netip.AddrPort
	Origin  string // "FILE:LINE" of the zone directive
}

// Route is a static TCP route: every connection to Port goes to To.
type Route struct {
	Port   uint16
	To     allowlist.Target
	Origin string // "FILE:LINE" of the tcp directive
}

// ConfigError is a problem at one place in a config file. Parse and Validate return only
// these (Validate joins several with errors.Join, one per line of text).
type ConfigError struct {
	File string
	Line int // 1-based; zero when the problem has no line (a Config built in code)
	Msg  string
}

// Error returns "FILE:LINE: message", the form editors and `lnm check` print.
func (e *ConfigError) Error() string {
	switch {
	case e.Line > 0:
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	case e.File != "":
		return e.File + ": " + e.Msg
	}
	return "config: " + e.Msg
}

// Defaults returns a Config holding every directive's default and nothing else; it does not
// validate (Listen is still empty).
func Defaults() *Config {
	c := &Config{}
	for i := range directives {
		if def := directives[i].def; def != nil {
			def(c)
		}
	}
	return c
}

// Load reads, parses and validates the config file at path, together with its managed rules
// file (allowfile.PathFor) when that exists: the managed rules follow the config's own in Rules,
// with origins in the managed file.
func Load(path string) (*Config, error) {
	data, err := readConfigFile(path)
	if err != nil {
		return nil, err
	}
	managed, err := readManaged(allowfile.PathFor(path))
	if err != nil {
		return nil, err
	}
	c, _, err := loadData(path, data, managed)
	return c, err
}

// Parse reads a config in Corefile syntax. It checks each directive's own syntax and values;
// Validate checks how they fit together. Parse has no side effects: the caddyfile `import`
// directive and {$ENV} placeholders are not supported.
func Parse(filename string, r io.Reader) (*Config, error) {
	// Read everything first: the caddyfile lexer panics on a read error.
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, &ConfigError{File: filename, Msg: err.Error()}
	}
	return parse(filename, data)
}

// List builds the indexed allow list from Rules. Its error (a duplicate rule) names both
// origins.
func (c *Config) List() (*allowlist.List, error) {
	l, err := allowlist.New(c.Rules)
	if err != nil {
		return nil, err
	}
	return l, nil
}

// Console is where the web console listens and keeps its files.
type Console struct {
	// Addr is the address and port it serves HTTPS on; invalid: no console.
	Addr netip.AddrPort
	// Dir holds the users file and the certificate generated at first start. Parse sets
	// DefaultConsoleDir when the directive leaves it out.
	Dir string
	// Cert and Key are a configured certificate and key (`cert CERT KEY`); empty: the
	// generated one.
	Cert, Key string
	// DeviceSide allows an address the devices can reach (one inside sources, or all
	// addresses): without it `lnm check` refuses one.
	DeviceSide bool
}
