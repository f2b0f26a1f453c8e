package appliance

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/lnm-project/lnm/allowlist"
)

// Summary describes the effective config for people and golden files: every setting with
// its default filled in, the zones and tcp routes, the allow rules in match order with their
// origins, and the warnings. The text is stable: same config, same bytes.
func (c *Config) Summary() string {
	var b strings.Builder
	set := func(key, value string) { fmt.Fprintf(&b, "%-17s%s\n", key, value) }

	set("config", orNone(c.File, "(not from a file)"))
	set("level", strconv.Itoa(c.Level))
	set("name", orNone(c.Name, "(host name at run time)"))
	set("listen", c.listenText())
	set("dns", portOrOff(c.DNSPort))
	proxies := make([]string, len(c.Proxies))
	for i, m := range c.Proxies {
		proxies[i] = m.String()
	}
	set("proxy", orNone(strings.Join(proxies, " "), "none"))
	if c.Parent.IsValid() {
		set("parent", c.Parent.String())
	} else {
		set("parent", "none (top level: names are resolved through upstream)")
	}
	set("upstream", orNone(joinAddrPorts(c.Upstream), "(from /etc/resolv.conf at run time)"))
	set("sources", orNone(joinPrefixes(c.Sources), "any"))
	if len(c.Children) > 0 {
		set("children", joinPrefixes(c.Children))
	}
	set("ttl", duration(c.TTL))
	set("hello_timeout", duration(c.HelloTimeout))
	set("dial_timeout", duration(c.DialTimeout))
	set("idle_timeout", duration(c.IdleTimeout))
	set("admin", orNone(c.Admin, "off"))
	set("metrics", orNone(c.Metrics, "off"))
	set("audit", orNone(c.AuditDir, "off (records kept in memory only)"))
	if c.AuditDir != "" {
		if c.FsyncAlways {
			set("fsync", "always")
		} else {
			set("fsync", duration(c.Fsync))
		}
		set("audit_max_age", duration(c.AuditMaxAge))
		set("audit_max_size", sizeText(c.AuditMaxSize))
	}
	if c.AuditFailOpen {
		set("on_audit_failure", "allow (keep serving when records cannot be written)")
	} else {
		set("on_audit_failure", "closed (refuse what cannot be audited)")
	}
	if c.Learn {
		set("mode", "learn (nothing is blocked; denials are recorded as would-deny)")
	} else {
		set("mode", "enforce")
	}
	if c.DenyRefused {
		// Shown only when set, as children is: the default is the DNS contract's NXDOMAIN.
		set("deny", "refused (names not on the list are answered REFUSED, not NXDOMAIN)")
	}
	if c.DrainRevoked {
		set("on_revoke", "drain (connections a reload no longer allows may finish)")
	} else {
		set("on_revoke", "revoke (connections a reload no longer allows are closed)")
	}
	set("link_window", duration(c.LinkWindow))
	set("store_max", strconv.Itoa(c.StoreMax))
	set("store_age", duration(c.StoreAge))
	if c.DNSRateLimit > 0 {
		set("dns_rate_limit", strconv.Itoa(c.DNSRateLimit)+" UDP queries a second per client")
	} else {
		set("dns_rate_limit", "off")
	}

	if len(c.Zones) == 0 {
		set("zone", "none")
	}
	for _, z := range c.Zones {
		set("zone", fmt.Sprintf("%s forward %s  # %s", z.Name, joinAddrPorts(z.Forward), z.Origin))
	}
	if len(c.Routes) == 0 {
		set("tcp", "none")
	}
	for _, r := range c.Routes {
		set("tcp", fmt.Sprintf("%d to %s  # %s", r.Port, r.To, r.Origin))
	}

	rules := c.orderedRules()
	if len(rules) == 0 {
		set("allow", "none: every name is denied")
	} else {
		set("allow", fmt.Sprintf("%d %s, in match order:", len(rules), plural(len(rules), "rule")))
		tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
		for i, r := range rules {
			fmt.Fprintf(tw, "  %d\t%s\t# %s\n", i+1, r.String(), r.Origin)
		}
		tw.Flush()
	}

	ws := c.Warnings()
	if len(ws) == 0 {
		set("warnings", "none")
	} else {
		set("warnings", strconv.Itoa(len(ws))+":")
		for _, w := range ws {
			b.WriteString("  " + w + "\n")
		}
	}
	return b.String()
}

// orderedRules returns the rules in match order, or as written if they do not form a list.
func (c *Config) orderedRules() []*allowlist.Rule {
	if l, err := c.List(); err == nil {
		return l.Ordered()
	}
	rules := make([]*allowlist.Rule, len(c.Rules))
	for i := range c.Rules {
		rules[i] = &c.Rules[i]
	}
	return rules
}

func (c *Config) listenText() string {
	if len(c.Listen) == 0 {
		return "none"
	}
	var parts []string
	wildcard := false
	for _, a := range c.Listen {
		parts = append(parts, a.String())
		wildcard = wildcard || a.IsUnspecified()
	}
	s := strings.Join(parts, " ")
	if wildcard {
		s += " (answers carry the address each query arrived on)"
	}
	return s
}

func orNone(s, none string) string {
	if s == "" {
		return none
	}
	return s
}

func portOrOff(p uint16) string {
	if p == 0 {
		return "off"
	}
	return strconv.Itoa(int(p))
}

func plural(n int, word string) string {
	if n == 1 {
		return word
	}
	return word + "s"
}

func joinAddrPorts(aps []netip.AddrPort) string {
	s := make([]string, len(aps))
	for i, ap := range aps {
		s[i] = ap.String()
	}
	return strings.Join(s, " ")
}

func joinPrefixes(ps []netip.Prefix) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, " ")
}

// duration prints 1h rather than 1h0m0s.
func duration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// sizeText writes a byte count in the largest binary unit that divides it.
func sizeText(n int64) string {
	for _, u := range []struct {
		suffix string
		scale  int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n%u.scale == 0 {
			return strconv.FormatInt(n/u.scale, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10) + "B"
}
