package allowlist

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// Rule is one line of the allow list: PATTERN [PORTS] [from CIDRS] [to HOST:PORT].
type Rule struct {
	Pattern Pattern
	// Ports narrows the rule to these forwarder ports (the port the device connected to).
	// Empty: every proxy port. DNS answers ignore ports: a name is resolvable if it is
	// allowed on any port.
	Ports []uint16
	// From narrows the rule to devices in these prefixes, for DNS and connections alike.
	// Empty: every source the box serves.
	From []netip.Prefix
	// To sends matching connections to a fixed destination instead of the parent or the
	// name's own addresses (east-west traffic). Zero: no fixed destination.
	To Target
	// Private lets the name's resolved addresses be inside the plant (RFC 1918, ULA,
	// CGNAT) at the top level, for a name that points inside on purpose (`private`). It
	// never admits loopback, link-local or the box's own addresses. False: only public
	// addresses are dialed for the name.
	Private bool
	// Origin says where the rule was written, "FILE:LINE"; empty for rules built in code.
	Origin string
}

// Target is a fixed destination: an address, or a name resolved when a connection is made.
// The zero value means no destination.
type Target struct {
	Addr netip.Addr // set when the destination was written as an address
	Name Name       // set when it was written as a name
	Port uint16
}

// ParseTarget reads "HOST:PORT" where HOST is an IPv4 address, a bracketed IPv6 address or a
// name.
func ParseTarget(s string) (Target, error) {
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return Target{}, fmt.Errorf("destination %q: want HOST:PORT", s)
	}
	host, portText := s[:i], s[i+1:]
	port, err := strconv.ParseUint(portText, 10, 16)
	if err != nil || port == 0 {
		return Target{}, fmt.Errorf("destination %q: port %q is not a number from 1 to 65535", s, portText)
	}
	t := Target{Port: uint16(port)}
	if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
		a, err := netip.ParseAddr(host[1 : len(host)-1])
		if err != nil {
			return Target{}, fmt.Errorf("destination %q: %w", s, err)
		}
		t.Addr = a
		return t, nil
	}
	if a, err := netip.ParseAddr(host); err == nil {
		if a.Is6() {
			return Target{}, fmt.Errorf("destination %q: write IPv6 addresses in brackets, [addr]:port", s)
		}
		t.Addr = a
		return t, nil
	}
	n, err := ParseUnicodeName(host)
	if err != nil {
		return Target{}, fmt.Errorf("destination %q: %w", s, err)
	}
	t.Name = n
	return t, nil
}

// IsZero reports whether the target is unset.
func (t Target) IsZero() bool { return t.Port == 0 }

// String returns the target as HOST:PORT.
func (t Target) String() string {
	if t.IsZero() {
		return ""
	}
	if t.Addr.IsValid() {
		return netip.AddrPortFrom(t.Addr, t.Port).String()
	}
	return string(t.Name) + ":" + strconv.Itoa(int(t.Port))
}

// allowsPort reports whether the rule admits connections to port; port 0 (a DNS question)
// is admitted by every rule.
func (r *Rule) allowsPort(port uint16) bool {
	return port == 0 || len(r.Ports) == 0 || slices.Contains(r.Ports, port)
}

// allowsSource reports whether the rule admits the source address.
func (r *Rule) allowsSource(src netip.Addr) bool {
	return len(r.From) == 0 || Prefixes(r.From).Contains(src)
}

// String returns the rule in config syntax.
func (r *Rule) String() string {
	var b strings.Builder
	b.WriteString(r.Pattern.String())
	for _, p := range r.Ports {
		b.WriteByte(' ')
		b.WriteString(strconv.Itoa(int(p)))
	}
	if len(r.From) > 0 {
		b.WriteString(" from")
		for _, p := range r.From {
			b.WriteByte(' ')
			b.WriteString(p.String())
		}
	}
	if !r.To.IsZero() {
		b.WriteString(" to ")
		b.WriteString(r.To.String())
	}
	if r.Private {
		b.WriteString(" private")
	}
	return b.String()
}

// sameAs reports whether two rules say the same thing, which makes the second a duplicate.
func (r *Rule) sameAs(o *Rule) bool {
	return r.Pattern == o.Pattern && slices.Equal(r.Ports, o.Ports) && slices.Equal(r.From, o.From) && r.To == o.To && r.Private == o.Private
}
