package config

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/coredns/caddy/caddyfile"

	"github.com/lnm-project/lnm/allowlist"
	"github.com/lnm-project/lnm/forwarder"
	"github.com/lnm-project/lnm/levelid"
	"github.com/lnm-project/lnm/resolver"
)

// maxTTL keeps synthesized answers from outliving a config change by more than a day.
const maxTTL = 24 * time.Hour

// parser is a caddyfile Dispenser whose errors are *ConfigError.
type parser struct {
	caddyfile.Dispenser
	c *Config
}

func parse(filename string, data []byte) (*Config, error) {
	d := caddyfile.NewDispenser(filename, bytes.NewReader(data))
	if err := checkBraces(d); err != nil {
		return nil, err
	}
	c := Defaults()
	c.File = filename
	c.pos = map[string]int{}
	p := &parser{Dispenser: d, c: c}
	if err := p.file(); err != nil {
		return nil, err
	}
	return c, nil
}

// Errf returns an error at the current token's line.
func (p *parser) Errf(format string, args ...any) error {
	return p.errAt(p.Line(), format, args...)
}

func (p *parser) errAt(line int, format string, args ...any) error {
	return &ConfigError{File: p.File(), Line: line, Msg: fmt.Sprintf(format, args...)}
}

// ArgErr reports that a directive has the wrong number of arguments.
func (p *parser) ArgErr(directive, want string) error {
	return p.Errf("%s: want %s", directive, want)
}

func (p *parser) origin(line int) string {
	return p.File() + ":" + strconv.Itoa(line)
}

// hasBlock reports whether a block opens after the current token, without moving.
func (p *parser) hasBlock() bool {
	peek := p.Dispenser
	return peek.NextArg() && peek.Val() == "{"
}

func (p *parser) noBlock(what string) error {
	if p.hasBlock() {
		return p.Errf("%s takes no block", what)
	}
	return nil
}

func (p *parser) file() error {
	d := p
	for d.Next() {
		if d.Val() != "lnm" {
			return d.Errf("unknown directive %q: a config is one lnm { ... } block", d.Val())
		}
		if p.c.lnmLine != 0 {
			return d.Errf("second lnm block (the first is at line %d): one file configures one box", p.c.lnmLine)
		}
		p.c.lnmLine = d.Line()
		if args := d.RemainingArgs(); len(args) > 0 {
			return d.Errf("lnm takes no arguments, found %q", args[0])
		}
		if !p.hasBlock() {
			return d.Errf("lnm needs a block on the same line: lnm { ... }")
		}
		for d.NextBlock() {
			if err := p.directive(); err != nil {
				return err
			}
		}
	}
	if p.c.lnmLine == 0 {
		return &ConfigError{File: p.File(), Line: 1, Msg: "no lnm { ... } block"}
	}
	return nil
}

// directive reads one directive of the lnm block with its entry in the table.
func (p *parser) directive() error {
	name, line := p.Val(), p.Line()
	d := directiveByName[name]
	if d == nil {
		return p.Errf("unknown property %q", name)
	}
	if !d.repeat {
		if prev, ok := p.c.pos[name]; ok {
			return p.Errf("%s given twice (first at line %d)", name, prev)
		}
		p.c.pos[name] = line
	}
	args := p.RemainingArgs()
	if !d.block {
		if err := p.noBlock(name); err != nil {
			return err
		}
	}
	return d.parse(p, args)
}

func (p *parser) oneArg(directive, want string, args []string) (string, error) {
	if len(args) != 1 {
		return "", p.ArgErr(directive, "one argument, "+want)
	}
	return args[0], nil
}

// pathOrOff reads a path, or "off" for the empty string.
func (p *parser) pathOrOff(directive, want string, args []string) (string, error) {
	s, err := p.oneArg(directive, want+" or off", args)
	if err != nil || s == "off" {
		return "", err
	}
	return s, nil
}

func (p *parser) fsync(args []string) error {
	s, err := p.oneArg("fsync", "a group-commit interval such as 100ms, or always", args)
	if err != nil {
		return err
	}
	if s == "always" {
		p.c.FsyncAlways, p.c.Fsync = true, 0
		return nil
	}
	if p.c.Fsync, err = p.timeout("fsync", []string{s}); err != nil {
		return p.Errf("fsync %q: want a duration such as 100ms, or always", s)
	}
	return nil
}

// choice reads one of two words and reports whether it was the second.
func (p *parser) choice(directive string, args []string, first, second string) (bool, error) {
	s, err := p.oneArg(directive, first+" or "+second, args)
	if err != nil {
		return false, err
	}
	switch s {
	case first:
		return false, nil
	case second:
		return true, nil
	}
	return false, p.Errf("%s %q: want %s or %s", directive, s, first, second)
}

func (p *parser) onAuditFailure(args []string) error {
	s, err := p.oneArg("on_audit_failure", "closed or allow", args)
	if err != nil {
		return err
	}
	switch s {
	case "closed":
		p.c.AuditFailOpen = false
	case "allow":
		p.c.AuditFailOpen = true
	default:
		return p.Errf("on_audit_failure %q: want closed (refuse what cannot be audited) or allow", s)
	}
	return nil
}

// countOrOff reads a number above zero, or "off" for 0.
func (p *parser) countOrOff(directive string, args []string) (int, error) {
	if len(args) == 1 && args[0] == "off" {
		return 0, nil
	}
	return p.countWant(directive, args, "a number above zero or off", "a whole number above zero, or off")
}

// count reads a positive whole number.
func (p *parser) count(directive string, args []string) (int, error) {
	return p.countWant(directive, args, "a number above zero", "a whole number above zero")
}

// countWant reads a number above zero; want and wantBad say what was expected when the
// argument count or the value is wrong.
func (p *parser) countWant(directive string, args []string, want, wantBad string) (int, error) {
	s, err := p.oneArg(directive, want, args)
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 {
		return 0, p.Errf("%s %q: want %s", directive, s, wantBad)
	}
	return n, nil
}

// sizeUnits are the suffixes size accepts, longest first so "MiB" is not read as "B".
var sizeUnits = []struct {
	suffix string
	scale  int64
}{
	{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3}, {"B", 1},
}

// size reads a byte count such as 4GiB, 512MiB or 1000000.
func (p *parser) size(directive string, args []string) (int64, error) {
	s, err := p.oneArg(directive, "a size such as 512MiB or 4GiB", args)
	if err != nil {
		return 0, err
	}
	num, scale := s, int64(1)
	for _, u := range sizeUnits {
		if strings.HasSuffix(s, u.suffix) {
			num, scale = strings.TrimSuffix(s, u.suffix), u.scale
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n <= 0 || n > (1<<62)/scale {
		return 0, p.Errf("%s %q: want a size above zero such as 512MiB or 4GiB", directive, s)
	}
	return n * scale, nil
}

func (p *parser) level(args []string) error {
	s, err := p.oneArg("level", "a number from 0 to 5", args)
	if err != nil {
		return err
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n > 5 {
		return p.Errf("level %q: want a Purdue level from 0 to 5", s)
	}
	p.c.Level = n
	return nil
}

// levelIdentity reads `level_identity on [HOPS]` or `level_identity off`.
func (p *parser) levelIdentity(args []string) error {
	const want = "on, on HOPS (1 to %d) or off"
	if len(args) == 0 || len(args) > 2 || args[0] != "on" && (args[0] != "off" || len(args) != 1) {
		return p.ArgErr("level_identity", fmt.Sprintf(want, levelid.MaxHops))
	}
	p.c.LevelIdentity = 0
	if args[0] == "off" {
		return nil
	}
	p.c.LevelIdentity = levelid.DefaultMaxHops
	if len(args) == 2 {
		n, err := strconv.Atoi(args[1])
		if err != nil || n < 1 || n > levelid.MaxHops {
			return p.Errf("level_identity on %q: want a hop limit from 1 to %d", args[1], levelid.MaxHops)
		}
		p.c.LevelIdentity = n
	}
	return nil
}

func (p *parser) listen(args []string) error {
	if len(args) == 0 || len(args) > 2 {
		return p.ArgErr("listen", "one IPv4 address, one IPv6 address, or one of each")
	}
	for _, s := range args {
		a, err := allowlist.ParseAddr(s)
		if err != nil {
			return p.Errf("listen: %v", err)
		}
		if a.IsMulticast() {
			return p.Errf("listen: %s is a multicast address", a)
		}
		for _, prev := range p.c.Listen {
			if prev.Is4() == a.Is4() {
				return p.Errf("listen: %s and %s are both %s; give at most one of each family", prev, a, addrFamily(a))
			}
		}
		p.c.Listen = append(p.c.Listen, a)
	}
	return nil
}

func (p *parser) dns(args []string) error {
	s, err := p.oneArg("dns", "a port or off", args)
	if err != nil {
		return err
	}
	if s == "off" {
		p.c.DNSPort = 0
		return nil
	}
	port, err := allowlist.ParsePort(s)
	if err != nil {
		return p.Errf("dns: %v, or off", err)
	}
	p.c.DNSPort = port
	return nil
}

func (p *parser) proxy(args []string) error { return p.ports("proxy", forwarder.FrontTLS, args) }

// ports parses the ports of `proxy`, `http` (PORT or LISTEN:UPSTREAM) or `connect` (PORT:
// a tunnel goes to the port its CONNECT names).
func (p *parser) ports(directive string, front forwarder.Front, args []string) error {
	if len(args) == 0 {
		if front == forwarder.FrontConnect {
			return p.ArgErr(directive, "one or more ports")
		}
		return p.ArgErr(directive, "one or more ports, each PORT or LISTEN:UPSTREAM")
	}
	for _, s := range args {
		m := PortMap{Front: front}
		listen, upstream, remap := strings.Cut(s, ":")
		port, err := allowlist.ParsePort(listen)
		if err != nil {
			return p.Errf("%s: %v", directive, err)
		}
		m.Listen, m.Upstream = port, port
		if remap && front == forwarder.FrontConnect {
			return p.Errf("connect %s: a connect port takes no upstream port; each tunnel goes to the port its CONNECT names", s)
		}
		if remap {
			if m.Upstream, err = allowlist.ParsePort(upstream); err != nil {
				return p.Errf("%s %s: upstream %v", directive, s, err)
			}
		}
		for _, prev := range p.c.Proxies {
			if prev.Listen == m.Listen {
				return p.Errf("%s: listen port %d given twice", directive, m.Listen)
			}
		}
		p.c.Proxies = append(p.c.Proxies, m)
	}
	return nil
}

func (p *parser) parent(args []string) error {
	s, err := p.oneArg("parent", "the address of the box one level up", args)
	if err != nil {
		return err
	}
	a, err := allowlist.ParseAddr(s)
	if err != nil {
		return p.Errf("parent: %v", err)
	}
	if a.IsUnspecified() || a.IsMulticast() {
		return p.Errf("parent: %s is not a host address", a)
	}
	p.c.Parent = a
	return nil
}

// servers reads DNS servers, ADDR or ADDR:PORT (IPv6 with a port in brackets).
func (p *parser) servers(directive string, args []string) ([]netip.AddrPort, error) {
	return parseEach(p, directive, "one or more server addresses, ADDR or ADDR:PORT", args, parseServer)
}

func (p *parser) prefixes(directive string, args []string) ([]netip.Prefix, error) {
	return parseEach(p, directive, "one or more CIDRs or addresses", args, allowlist.ParsePrefix)
}

// parseEach reads one or more distinct values of a directive with parse.
func parseEach[T comparable](p *parser, directive, want string, args []string, parse func(string) (T, error)) ([]T, error) {
	if len(args) == 0 {
		return nil, p.ArgErr(directive, want)
	}
	var out []T
	for _, s := range args {
		v, err := parse(s)
		if err != nil {
			return nil, p.Errf("%s: %v", directive, err)
		}
		if slices.Contains(out, v) {
			return nil, p.Errf("%s: %s given twice", directive, s)
		}
		out = append(out, v)
	}
	return out, nil
}

func (p *parser) ttl(args []string) error {
	s, err := p.oneArg("ttl", "a duration such as 30s", args)
	if err != nil {
		return err
	}
	t, err := parseDuration(s)
	if err != nil {
		return p.Errf("ttl: %v", err)
	}
	if t < time.Second || t > maxTTL || t%time.Second != 0 {
		return p.Errf("ttl %s: want whole seconds from 1s to 24h", s)
	}
	p.c.TTL = t
	return nil
}

func (p *parser) timeout(directive string, args []string) (time.Duration, error) {
	s, err := p.oneArg(directive, "a duration such as 10s", args)
	if err != nil {
		return 0, err
	}
	t, err := parseDuration(s)
	if err != nil {
		return 0, p.Errf("%s: %v", directive, err)
	}
	if t <= 0 {
		return 0, p.Errf("%s %s: want a duration above zero", directive, s)
	}
	return t, nil
}

// idleTimeout reads `idle_timeout DURATION [PORT=DURATION...]`: the timeout of every stream,
// then overrides for streams on some listen ports.
func (p *parser) idleTimeout(args []string) error {
	if len(args) == 0 {
		return p.ArgErr("idle_timeout", "a duration such as 1h, then optionally PORT=DURATION for some ports")
	}
	var err error
	if p.c.IdleTimeout, err = p.timeout("idle_timeout", args[:1]); err != nil {
		return err
	}
	for _, s := range args[1:] {
		portText, durText, ok := strings.Cut(s, "=")
		if !ok {
			return p.Errf("idle_timeout %s: want PORT=DURATION, such as 8883=2h", s)
		}
		port, err := allowlist.ParsePort(portText)
		if err != nil {
			return p.Errf("idle_timeout %s: %v", s, err)
		}
		d, err := p.timeout("idle_timeout "+portText, []string{durText})
		if err != nil {
			return err
		}
		if _, dup := p.c.IdleTimeouts[port]; dup {
			return p.Errf("idle_timeout: port %d given twice", port)
		}
		if p.c.IdleTimeouts == nil {
			p.c.IdleTimeouts = map[uint16]time.Duration{}
		}
		p.c.IdleTimeouts[port] = d
	}
	return nil
}

func (p *parser) metrics(args []string) error {
	s, err := p.oneArg("metrics", "HOST:PORT to serve metrics on", args)
	if err != nil {
		return err
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return p.Errf("metrics %q: want HOST:PORT, with HOST an IP address or empty", s)
	}
	if host != "" {
		if _, err := allowlist.ParseAddr(host); err != nil {
			return p.Errf("metrics: %v", err)
		}
	}
	if _, err := allowlist.ParsePort(port); err != nil {
		return p.Errf("metrics: %v", err)
	}
	p.c.Metrics = s
	return nil
}

// console reads `console ADDR:PORT [dir DIR] [cert CERT KEY] [device_side]`.
func (p *parser) console(args []string) error {
	const syntax = "console ADDR:PORT [dir DIR] [cert CERT KEY] [device_side]"
	if len(args) == 0 {
		return p.Errf("console needs an address: %s", syntax)
	}
	ap, err := netip.ParseAddrPort(args[0])
	if err != nil || ap.Port() == 0 {
		return p.Errf("console %q: want IP:PORT (an IPv6 address in brackets): %s", args[0], syntax)
	}
	c := Console{Addr: netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), Dir: DefaultConsoleDir}
	seen := map[string]bool{}
	for rest := args[1:]; len(rest) > 0; {
		w := rest[0]
		if seen[w] {
			return p.Errf("console: %s given twice", w)
		}
		seen[w] = true
		switch {
		case w == "dir" && len(rest) >= 2:
			c.Dir, rest = rest[1], rest[2:]
		case w == "cert" && len(rest) >= 3:
			c.Cert, c.Key, rest = rest[1], rest[2], rest[3:]
		case w == "device_side":
			c.DeviceSide, rest = true, rest[1:]
		case w == "dir" || w == "cert":
			return p.Errf("console: %s is missing its value: %s", w, syntax)
		default:
			return p.Errf("console: unknown word %q: %s", w, syntax)
		}
	}
	p.c.Console = c
	return nil
}

func (p *parser) allow(args []string) error {
	d := p
	if len(args) > 0 {
		return d.Errf("allow takes no arguments; write one rule per line inside allow { ... }")
	}
	if !p.hasBlock() {
		return d.Errf("allow needs a block on the same line: allow { %s ... }", allowlist.RuleSyntax)
	}
	for d.NextBlock() {
		r, err := p.rule()
		if err != nil {
			return err
		}
		p.c.Rules = append(p.c.Rules, r)
	}
	return nil
}

// rule reads one allow line, the current token being its pattern.
func (p *parser) rule() (allowlist.Rule, error) {
	line, pattern := p.Line(), p.Val()
	args := p.RemainingArgs()
	if err := p.noBlock("a rule"); err != nil {
		return allowlist.Rule{}, err
	}
	r, err := allowlist.ParseRule(pattern, args)
	if err != nil {
		return r, p.errAt(line, "%v", err)
	}
	r.Origin = p.origin(line)
	return r, nil
}

func (p *parser) zone(args []string) error {
	d := p
	line := d.Line()
	if len(args) != 1 {
		return d.ArgErr("zone", "one zone name: zone NAME { forward ADDR... }")
	}
	if strings.Contains(args[0], "*") {
		return d.Errf("zone %s: a zone is one name and everything below it; write it without '*'", args[0])
	}
	name, err := allowlist.ParseUnicodeName(args[0])
	if err != nil {
		return d.Errf("zone: %s", err)
	}
	if !p.hasBlock() {
		return d.Errf("zone %s needs a block on the same line: zone %s { forward ADDR... }", name, name)
	}
	z := Zone{Name: name, Origin: p.origin(line)}
	for d.NextBlock() {
		switch d.Val() {
		case "forward":
			if z.Forward != nil {
				return d.Errf("forward given twice in zone %s", name)
			}
			args := d.RemainingArgs()
			if err := p.noBlock("forward"); err != nil {
				return err
			}
			if z.Forward, err = p.servers("forward", args); err != nil {
				return err
			}
		default:
			return d.Errf("unknown property %q in zone %s", d.Val(), name)
		}
	}
	if len(z.Forward) == 0 {
		return p.errAt(line, "zone %s: forward ADDR... is required", name)
	}
	p.c.Zones = append(p.c.Zones, z)
	return nil
}

func (p *parser) route(args []string) error {
	d := p
	line := d.Line()
	if len(args) != 2 {
		return d.ArgErr("tcp", "a port and a destination: tcp PORT HOST:PORT")
	}
	port, err := allowlist.ParsePort(args[0])
	if err != nil {
		return d.Errf("tcp: %v", err)
	}
	to, err := allowlist.ParseTarget(args[1])
	if err != nil {
		return d.Errf("tcp: %s", err)
	}
	p.c.Routes = append(p.c.Routes, Route{Port: port, To: to, Origin: p.origin(line)})
	return nil
}

// checkBraces makes blocks unambiguous before the Dispenser walks them: a '{' ends the line
// that opens its block, a '}' stands alone on its line (or directly after '{' for an empty
// block), and every block is closed. The Dispenser itself would silently end a block at EOF
// or treat a '{' starting a line as the end of the enclosing block.
func checkBraces(d caddyfile.Dispenser) error {
	var toks []caddyfile.Token
	for d.Next() {
		toks = append(toks, caddyfile.Token{File: d.File(), Line: d.Line(), Text: d.Val()})
	}
	sameLine := func(i, j int) bool {
		return i >= 0 && j < len(toks) && toks[i].Line+strings.Count(toks[i].Text, "\n") == toks[j].Line
	}
	errAt := func(t caddyfile.Token, format string, args ...any) error {
		return &ConfigError{File: t.File, Line: t.Line, Msg: fmt.Sprintf(format, args...)}
	}
	var open []caddyfile.Token
	for i, t := range toks {
		switch t.Text {
		case "{":
			if !sameLine(i-1, i) || toks[i-1].Text == "{" || toks[i-1].Text == "}" {
				return errAt(t, "'{' must end the line of the directive it belongs to")
			}
			if sameLine(i, i+1) && toks[i+1].Text != "}" {
				return errAt(t, "unexpected %q after '{': start the block's contents on a new line", toks[i+1].Text)
			}
			open = append(open, t)
		case "}":
			if sameLine(i-1, i) && toks[i-1].Text != "{" {
				return errAt(t, "'}' must be on a line of its own")
			}
			if sameLine(i, i+1) {
				return errAt(t, "unexpected %q after '}': put it on a new line", toks[i+1].Text)
			}
			if len(open) == 0 {
				return errAt(t, "unexpected '}': no block is open")
			}
			open = open[:len(open)-1]
		}
	}
	if len(open) > 0 {
		return errAt(open[len(open)-1], "block opened here is never closed: missing '}'")
	}
	return nil
}

func addrFamily(a netip.Addr) string {
	if a.Is4() {
		return "IPv4"
	}
	return "IPv6"
}

// parseServer reads a DNS server: ADDR, ADDR:PORT or [IPv6]:PORT.
func parseServer(s string) (netip.AddrPort, error) {
	var a netip.Addr
	port := resolver.DefaultPort
	if host, portText, err := net.SplitHostPort(s); err == nil {
		if port, err = allowlist.ParsePort(portText); err != nil {
			return netip.AddrPort{}, fmt.Errorf("%s: %v", s, err)
		}
		if a, err = allowlist.ParseAddr(host); err != nil {
			return netip.AddrPort{}, err
		}
	} else if a, err = allowlist.ParseAddr(s); err != nil {
		return netip.AddrPort{}, fmt.Errorf("%q is not ADDR or ADDR:PORT", s)
	}
	if a.IsUnspecified() || a.IsMulticast() {
		return netip.AddrPort{}, fmt.Errorf("%s is not a host address", a)
	}
	return netip.AddrPortFrom(a, port), nil
}

// parseDuration reads a Go duration ("30s", "1h30m") or a bare number of seconds ("30").
func parseDuration(s string) (time.Duration, error) {
	if n, err := strconv.ParseUint(s, 10, 32); err == nil {
		return time.Duration(n) * time.Second, nil
	}
	t, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration such as 30s, 5m or 1h", s)
	}
	return t, nil
}
