package config

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
	s := &summary{}
	s.set("config", orNone(c.File, "(not from a file)"))
	for i := range directives {
		directives[i].summary(c, s)
	}
	ws := c.Warnings()
	if len(ws) == 0 {
		s.set("warnings", "none")
	} else {
		s.set("warnings", strconv.Itoa(len(ws))+":")
		for _, w := range ws {
			s.b.WriteString("  " + w + "\n")
		}
	}
	return s.b.String()
}

// summary is the text Summary builds, a setting a line.
type summary struct{ b strings.Builder }

func (s *summary) set(key, value string) { fmt.Fprintf(&s.b, "%-16s %s\n", key, value) }

// rules writes the allow list in match order with each rule's origin.
func (s *summary) rules(c *Config) {
	rules := c.OrderedRules()
	if len(rules) == 0 {
		s.set("allow", "none: every name is denied")
		return
	}
	s.set("allow", fmt.Sprintf("%d %s, in match order:", len(rules), plural(len(rules), "rule")))
	tw := tabwriter.NewWriter(&s.b, 0, 0, 2, ' ', 0)
	for i, r := range rules {
		fmt.Fprintf(tw, "  %d\t%s\t# %s\n", i+1, r.String(), r.Origin)
	}
	tw.Flush()
}

// OrderedRules returns the rules in match order (the order `lnm check` prints), or as written if they do not form a list.
func (c *Config) OrderedRules() []*allowlist.Rule {
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

// text is the console's summary: off, or where it listens and keeps its files.
func (c Console) text() string {
	if !c.Addr.IsValid() {
		return "off"
	}
	s := c.Addr.String() + " dir " + c.Dir
	if c.Cert != "" {
		s += " cert " + c.Cert + " " + c.Key
	} else {
		s += " (self-signed certificate generated there)"
	}
	if c.DeviceSide {
		s += " device_side"
	}
	return s
}
