package config

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lnm-project/lnm/allowlist"
	"github.com/lnm-project/lnm/forwarder"
	"github.com/lnm-project/lnm/levelid"
)

// Validate checks how the directives fit together: listen is given, no two listeners share
// a port, every rule port has a proxy listener, no rule is written twice, and nothing points
// back at the box itself. It returns every problem it finds, joined in line order, each a
// *ConfigError.
func (c *Config) Validate() error {
	v := validator{c: c}
	v.settings()
	v.ports()
	v.rules()
	v.idleTimeouts()
	v.loops()
	v.dhcp()
	if len(v.errs) == 0 {
		// A backstop: the checks above already reject everything allowlist.New refuses.
		if _, err := c.List(); err != nil {
			v.add(c.lnmLine, "%v", err)
		}
	}
	slices.SortStableFunc(v.errs, func(a, b *ConfigError) int {
		return cmp.Or(cmp.Compare(a.File, b.File), cmp.Compare(a.Line, b.Line))
	})
	errs := make([]error, len(v.errs))
	for i, e := range v.errs {
		errs[i] = e
	}
	return errors.Join(errs...)
}

type validator struct {
	c    *Config
	errs []*ConfigError
}

func (v *validator) add(line int, format string, args ...any) {
	v.errs = append(v.errs, &ConfigError{File: v.c.File, Line: line, Msg: fmt.Sprintf(format, args...)})
}

func (v *validator) addAt(origin string, format string, args ...any) {
	file, line := SplitOrigin(origin, v.c.File)
	v.errs = append(v.errs, &ConfigError{File: file, Line: line, Msg: fmt.Sprintf(format, args...)})
}

// line returns where a directive was written, or the lnm line when it was not.
func (c *Config) line(directive string) int {
	if n, ok := c.pos[directive]; ok {
		return n
	}
	return c.lnmLine
}

// SplitOrigin splits "FILE:LINE" (a rule's or zone's Origin); an origin without a line keeps the whole text as the file.
func SplitOrigin(origin, file string) (string, int) {
	if origin == "" {
		return file, 0
	}
	i := strings.LastIndexByte(origin, ':')
	if i < 0 {
		return origin, 0
	}
	n, err := strconv.Atoi(origin[i+1:])
	if err != nil {
		return origin, 0
	}
	return origin[:i], n
}

func (v *validator) settings() {
	c := v.c
	if len(c.Listen) == 0 {
		v.add(c.lnmLine, "listen is required: the address DNS answers carry and the proxies bind")
	}
	for _, d := range []struct {
		name string
		t    time.Duration
	}{{"ttl", c.TTL}, {"hello_timeout", c.HelloTimeout}, {"dial_timeout", c.DialTimeout}, {"idle_timeout", c.IdleTimeout},
		{"link_window", c.LinkWindow}, {"store_age", c.StoreAge}, {"audit_max_age", c.AuditMaxAge}} {
		if d.t <= 0 {
			v.add(c.line(d.name), "%s must be above zero", d.name)
		}
	}
	if c.StoreMax <= 0 {
		v.add(c.line("store_max"), "store_max must be above zero")
	}
	if c.AuditDir != "" && c.AuditMaxSize <= 0 {
		v.add(c.line("audit_max_size"), "audit_max_size must be above zero")
	}
	if c.AuditDir != "" && c.Fsync <= 0 && !c.FsyncAlways {
		v.add(c.line("fsync"), "fsync must be a duration above zero, or always")
	}
	v.console()
	if c.LevelIdentity > 0 && c.Name != "" && !levelid.ValidName(c.Name) {
		v.add(c.line("name"), "name %q cannot travel in a level-identity header: use 1 to %d letters, digits, '-', '_' or '.'", c.Name, levelid.MaxNameLen)
	}
	if c.Parent.IsValid() && slices.Contains(c.Listen, c.Parent) {
		v.add(c.line("parent"), "parent %s is this box's own listen address", c.Parent)
	}
	seen := map[allowlist.Name]string{}
	for _, z := range c.Zones {
		if prev, ok := seen[z.Name]; ok {
			v.addAt(z.Origin, "zone %s given twice (first at %s)", z.Name, prev)
			continue
		}
		seen[z.Name] = z.Origin
	}
}

// ports checks that no two listeners share a TCP port: dns (which also serves TCP), each
// proxy listen port and each tcp route.
func (v *validator) ports() {
	c := v.c
	owner := map[uint16]string{} // port → what listens on it, for the message
	if c.DNSPort != 0 {
		owner[c.DNSPort] = fmt.Sprintf("dns (line %d)", c.line("dns"))
		if _, ok := c.pos["dns"]; !ok {
			owner[c.DNSPort] = fmt.Sprintf("dns (port %d by default; dns off disables it)", c.DNSPort)
		}
	}
	for _, m := range c.Proxies {
		d := frontDirective(m.Front)
		if prev, ok := owner[m.Listen]; ok {
			v.add(c.line(d), "%s port %d is already used by %s", d, m.Listen, prev)
			continue
		}
		owner[m.Listen] = fmt.Sprintf("%s (line %d)", d, c.line(d))
	}
	for _, r := range c.Routes {
		if prev, ok := owner[r.Port]; ok {
			v.addAt(r.Origin, "tcp port %d is already used by %s", r.Port, prev)
			continue
		}
		_, line := SplitOrigin(r.Origin, c.File)
		owner[r.Port] = fmt.Sprintf("tcp (line %d)", line)
	}
}

// ProxyText says which ports the proxies listen on, for messages about rules' ports.
func (c *Config) ProxyText() string {
	if len(c.Proxies) == 0 {
		return "there is no proxy directive"
	}
	listening := make([]string, len(c.Proxies))
	for i, m := range c.Proxies {
		listening[i] = strconv.Itoa(int(m.Listen))
	}
	return "proxy listens on " + strings.Join(listening, " ")
}

// portsText lists the ports of one front in config syntax, "" when there are none.
func (c *Config) portsText(front forwarder.Front) string {
	var out []string
	for _, m := range c.Proxies {
		if m.Front == front {
			out = append(out, m.String())
		}
	}
	return strings.Join(out, " ")
}

// Unserved lists the ports of r that no proxy listens on: a rule narrowed to them could
// never allow a connection, which Validate refuses. With a connect port, any port may be a
// CONNECT's target, so none is unserved.
func (c *Config) Unserved(r *allowlist.Rule) []uint16 {
	if c.portsText(forwarder.FrontConnect) != "" {
		return nil
	}
	var out []uint16
	for _, port := range r.Ports {
		if !slices.ContainsFunc(c.Proxies, func(m PortMap) bool { return m.Listen == port }) {
			out = append(out, port)
		}
	}
	return out
}

// idleTimeouts checks that every port with its own idle timeout is one the box listens on for
// streams.
func (v *validator) idleTimeouts() {
	c := v.c
	for _, port := range slices.Sorted(maps.Keys(c.IdleTimeouts)) {
		if !slices.ContainsFunc(c.Proxies, func(m PortMap) bool { return m.Listen == port }) &&
			!slices.ContainsFunc(c.Routes, func(r Route) bool { return r.Port == port }) {
			v.add(c.line("idle_timeout"), "idle_timeout %d=%s: no proxy or tcp route listens on port %d", port, duration(c.IdleTimeouts[port]), port)
		}
	}
}

func (v *validator) rules() {
	c := v.c
	first := map[string]string{} // rule text → origin
	for i := range c.Rules {
		r := &c.Rules[i]
		for _, port := range c.Unserved(r) {
			v.addAt(r.Origin, "rule %q: port %d has no proxy listener (%s)", r.String(), port, c.ProxyText())
		}
		key := r.Key()
		if prev, ok := first[key]; ok {
			v.addAt(r.Origin, "duplicate rule %q (first at %s)", r.String(), prev)
			continue
		}
		first[key] = r.Origin
	}
}

// loops rejects destinations that are the box itself: the connection or query would come
// straight back in.
func (v *validator) loops() {
	c := v.c
	tcpPorts := map[uint16]bool{}
	for _, m := range c.Proxies {
		tcpPorts[m.Listen] = true
	}
	for _, r := range c.Routes {
		tcpPorts[r.Port] = true
	}
	for _, r := range c.Routes {
		if tcpPorts[r.To.Port] && c.isSelf(r.To.Addr) {
			v.addAt(r.Origin, "tcp %d: destination %s is this box itself", r.Port, r.To)
		}
	}
	for i := range c.Rules {
		r := &c.Rules[i]
		if !r.To.IsZero() && tcpPorts[r.To.Port] && c.isSelf(r.To.Addr) {
			v.addAt(r.Origin, "rule %q: destination %s is this box itself", r.String(), r.To)
		}
	}
	if c.DNSPort == 0 {
		return
	}
	for _, s := range c.Upstream {
		if s.Port() == c.DNSPort && c.isSelf(s.Addr()) {
			v.add(c.line("upstream"), "upstream %s is this box's own DNS server, which answers only the allow list", s)
		}
	}
	for _, z := range c.Zones {
		for _, s := range z.Forward {
			if s.Port() == c.DNSPort && c.isSelf(s.Addr()) {
				v.addAt(z.Origin, "zone %s: forward %s is this box's own DNS server", z.Name, s)
			}
		}
	}
}

// isSelf reports whether a is one of the listen addresses, or a loopback address while
// listening on the wildcard of its family. Other local addresses would need a lookup.
func (c *Config) isSelf(a netip.Addr) bool {
	if !a.IsValid() {
		return false
	}
	for _, l := range c.Listen {
		if l == a || (l.IsUnspecified() && l.Is4() == a.Is4() && a.IsLoopback()) {
			return true
		}
	}
	return false
}

// Warnings lists what is allowed but probably not meant, as "FILE:LINE: message": rules
// that can never decide, rules the resolver will never answer for, settings with no effect.
// Call it on a valid Config.
func (c *Config) Warnings() []string {
	var ws []*ConfigError
	warn := func(origin string, format string, args ...any) {
		file, line := SplitOrigin(origin, c.File)
		ws = append(ws, &ConfigError{File: file, Line: line, Msg: fmt.Sprintf(format, args...)})
	}
	lnm := c.File + ":" + strconv.Itoa(c.lnmLine)
	if len(c.Rules) == 0 {
		warn(lnm, "no allow rules: every name is denied")
	} else if len(c.Proxies) == 0 {
		warn(lnm, "allow rules but no proxy ports: names resolve to this box, but no connection is forwarded")
	}
	var nameTargets bool
	for i := range c.Rules {
		r := &c.Rules[i]
		nameTargets = nameTargets || r.To.Name != ""
		for _, z := range c.Zones {
			if r.Pattern.Base == z.Name || r.Pattern.Base.IsBelow(z.Name) {
				warn(r.Origin, "rule %q: names in zone %s are answered by the zone's servers (%s), not with this box's address", r.String(), z.Name, z.Origin)
			}
		}
		if len(r.From) > 0 && len(c.Sources) > 0 && !overlapsAny(r.From, c.Sources) {
			warn(r.Origin, "rule %q never matches: its from lies outside sources", r.String())
		}
		if r.Private && c.Parent.IsValid() {
			warn(r.Origin, "rule %q: private has no effect here: connections go to the parent, which resolves the name (write it in the top box's list)", r.String())
		}
	}
	for _, rt := range c.Routes {
		nameTargets = nameTargets || rt.To.Name != ""
	}
	if c.LevelIdentity > 0 && !c.Parent.IsValid() && len(c.Children) == 0 {
		warn(c.File+":"+strconv.Itoa(c.line("level_identity")), "level_identity has no parent to tell and no children to hear: it only refuses PROXY headers from devices")
	}
	if c.Parent.IsValid() && len(c.Upstream) > 0 && !nameTargets {
		warn(c.File+":"+strconv.Itoa(c.line("upstream")), "upstream is unused: connections go to the parent, and no tcp route or to destination is a name")
	}
	if l, err := c.List(); err == nil {
		ordered := l.Ordered()
		for i, r := range ordered {
			for _, s := range ordered[:i] {
				if covers(s, r) {
					warn(r.Origin, "rule %q never decides: %q (%s) comes first and matches everything it does", r.String(), s.String(), s.Origin)
					break
				}
			}
		}
	}
	slices.SortStableFunc(ws, func(a, b *ConfigError) int {
		return cmp.Or(cmp.Compare(a.File, b.File), cmp.Compare(a.Line, b.Line))
	})
	out := make([]string, len(ws))
	for i, w := range ws {
		out[i] = w.Error()
	}
	return out
}

// covers reports whether rule s matches every name, port and source that r matches, so
// that r, coming after s in match order, never decides.
func covers(s, r *allowlist.Rule) bool {
	if s.Pattern != r.Pattern {
		return false
	}
	if len(s.Ports) > 0 {
		if len(r.Ports) == 0 {
			return false
		}
		for _, p := range r.Ports {
			if !slices.Contains(s.Ports, p) {
				return false
			}
		}
	}
	if len(s.From) > 0 {
		if len(r.From) == 0 {
			return false
		}
		for _, rp := range r.From {
			if !slices.ContainsFunc(s.From, func(sp netip.Prefix) bool {
				return sp.Bits() <= rp.Bits() && sp.Contains(rp.Addr())
			}) {
				return false
			}
		}
	}
	return true
}

func overlapsAny(a, b []netip.Prefix) bool {
	for _, x := range a {
		for _, y := range b {
			if x.Overlaps(y) {
				return true
			}
		}
	}
	return false
}

// console refuses a console the devices can reach unless it says device_side, and one
// without the admin API it reads.
func (v *validator) console() {
	c, con := v.c, v.c.Console
	if !con.Addr.IsValid() {
		return
	}
	if c.Admin == "" {
		v.add(c.line("console"), "console needs the admin API, which is off (admin off)")
	}
	if con.DeviceSide {
		return
	}
	a := con.Addr.Addr()
	if a.IsUnspecified() && len(c.Sources) > 0 {
		v.add(c.line("console"), "console %s listens on every address, the device side too; bind the management address, or write device_side to mean it", con.Addr)
		return
	}
	for _, p := range c.Sources {
		if p.Contains(a) {
			v.add(c.line("console"), "console %s is on the device side (inside sources %s); bind the management address, or write device_side to mean it", con.Addr, p)
			return
		}
	}
}
