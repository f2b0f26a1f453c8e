package allowlist

// The rule grammar: the words of one allow line, as the config file, the managed file, the
// admin API and the onboarding importers all write it. Parse errors describe the text and carry
// no package prefix: callers show them inside their own "FILE:LINE: " or "rule N: " context.

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// RuleSyntax is the grammar of one rule, for error messages and file headers.
const RuleSyntax = "PATTERN [PORT...] [from CIDR...] [to HOST:PORT] [private]"

// ParseRule reads one rule from its pattern and the words after it: ports, then optionally
// `from` and CIDRs or addresses, then optionally `to` and HOST:PORT, then optionally the word
// `private`. Ports and sources come
// back in canonical (sorted) order, so rules that say the same thing compare equal. Origin is
// left empty for the caller to set.
func ParseRule(pattern string, words []string) (Rule, error) {
	var r Rule
	var err error
	if r.Pattern, err = ParsePattern(pattern); err != nil {
		return r, err
	}
	if n := len(words); n > 0 && words[n-1] == "private" {
		r.Private, words = true, words[:n-1]
	}
	i := 0
	for ; i < len(words) && words[i] != "from" && words[i] != "to" && words[i] != "private"; i++ {
		port, err := ParsePort(words[i])
		if err != nil {
			if _, nerr := strconv.Atoi(words[i]); nerr != nil { // a word, not a number: a second rule?
				return r, fmt.Errorf("%v (one rule per line: %s)", err, RuleSyntax)
			}
			return r, err
		}
		if slices.Contains(r.Ports, port) {
			return r, fmt.Errorf("port %d given twice in one rule", port)
		}
		r.Ports = append(r.Ports, port)
	}
	if i < len(words) && words[i] == "from" {
		i++
		start := i
		for ; i < len(words) && words[i] != "to"; i++ {
			if words[i] == "from" {
				return r, fmt.Errorf("from given twice in one rule")
			}
			pf, err := ParsePrefix(words[i])
			if err != nil {
				return r, fmt.Errorf("from: %v", err)
			}
			if slices.Contains(r.From, pf) {
				return r, fmt.Errorf("from: %s given twice", pf)
			}
			r.From = append(r.From, pf)
		}
		if i == start {
			return r, fmt.Errorf("from needs one or more CIDRs or addresses")
		}
	}
	if i < len(words) && words[i] == "to" {
		i++
		if i == len(words) {
			return r, fmt.Errorf("to needs a destination, HOST:PORT")
		}
		if r.To, err = ParseTarget(words[i]); err != nil {
			return r, fmt.Errorf("to: %v", err)
		}
		if i++; i < len(words) {
			return r, fmt.Errorf("unexpected %q after the destination (%s)", words[i], RuleSyntax)
		}
	}
	if i < len(words) {
		return r, fmt.Errorf("unexpected %q: write private last (%s)", words[i], RuleSyntax)
	}
	if r.Private && !r.To.IsZero() {
		return r, fmt.Errorf("private has no effect with to: the destination is fixed and may be inside already")
	}
	r.canonicalize()
	return r, nil
}

// canonicalize sorts the rule's ports and sources.
func (r *Rule) canonicalize() {
	slices.Sort(r.Ports)
	slices.SortFunc(r.From, netip.Prefix.Compare)
}

// Key is the rule's identity: equal for rules that say the same thing, whatever order their
// ports and sources were written in and wherever they were written.
func (r *Rule) Key() string {
	n := Rule{Pattern: r.Pattern, To: r.To, Private: r.Private}
	n.Ports = slices.Sorted(slices.Values(r.Ports))
	n.From = slices.SortedFunc(slices.Values(r.From), netip.Prefix.Compare)
	return n.String()
}

// ParsePort reads a port number from 1 to 65535.
func ParsePort(s string) (uint16, error) {
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("port %q: want a number from 1 to 65535", s)
	}
	return uint16(n), nil
}

// ParseAddr reads an IP address as a person writes it: no zone, and IPv4 in dotted form.
func ParseAddr(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("%q is not an IP address", s)
	}
	if a.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("%s: zones (%%%s) are not supported", s, a.Zone())
	}
	if a.Is4In6() {
		return netip.Addr{}, fmt.Errorf("%s: write IPv4 addresses as %s", s, a.Unmap())
	}
	return a, nil
}

// ParsePrefix reads a CIDR, or a bare address meaning just that host (/32 or /128). A CIDR
// with bits set past its length is rejected rather than masked: it is usually a typo.
func ParsePrefix(s string) (netip.Prefix, error) {
	if !strings.Contains(s, "/") {
		a, err := ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not a CIDR or an address", s)
		}
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	pf, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not a CIDR", s)
	}
	if pf.Addr().Is4In6() {
		return netip.Prefix{}, fmt.Errorf("%s: write IPv4 prefixes in dotted form", s)
	}
	if m := pf.Masked(); m != pf {
		return netip.Prefix{}, fmt.Errorf("%s has bits set past /%d: did you mean %s?", s, pf.Bits(), m)
	}
	return pf, nil
}

// Prefixes is a set of address prefixes: a rule's `from`, the box's `sources` or `children`.
// The zero value is the empty set, which contains no address; callers that read an empty set
// as "anyone" say so themselves.
type Prefixes []netip.Prefix

// Contains reports whether a, with any IPv4-in-IPv6 mapping removed, is in one of the prefixes.
func (ps Prefixes) Contains(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
