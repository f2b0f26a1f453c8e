// Package allowlist is lnm's one list: the rules that decide which names a device may resolve
// and connect to. The resolver and the forwarder both decide with it, so a name that resolves
// is a name that connects, except where a rule's ports or sources narrow it.
//
// The package is a leaf: it knows names, ports and source addresses, nothing about DNS
// messages, TLS or config files.
package allowlist

import (
	"errors"
	"fmt"
	"strings"

	"golang.org/x/net/idna"
)

// Name is a normalized host name: lower-case ASCII (IDNA A-labels), no trailing dot,
// 1–253 bytes, labels of 1–63 bytes made of letters, digits, '-' and '_'.
// The zero value is the empty name, which no pattern matches.
type Name string

// maxNameLen is the longest name in text form without the trailing dot (RFC 1035 §2.3.4:
// 255 octets on the wire, which is 253 characters of text).
const maxNameLen = 253

// ParseName normalizes a name that arrived on the wire (a DNS question, a TLS SNI). It accepts
// one trailing dot and any letter case; it rejects anything that is not plain ASCII host-name
// syntax, including IP literals, because wire names are never converted from Unicode.
func ParseName(s string) (Name, error) {
	s = strings.TrimSuffix(s, ".")
	if s == "" {
		return "", errors.New("empty name")
	}
	if len(s) > maxNameLen {
		return "", fmt.Errorf("name is %d bytes, longer than %d", len(s), maxNameLen)
	}
	upper := false
	label, digitsOnly := 0, true
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '.':
			if label == 0 {
				return "", fmt.Errorf("empty label in %q", s)
			}
			label, digitsOnly = 0, true
			continue
		case 'a' <= c && c <= 'z', c == '-', c == '_':
			digitsOnly = false
		case '0' <= c && c <= '9':
		case 'A' <= c && c <= 'Z':
			digitsOnly, upper = false, true
		default:
			return "", fmt.Errorf("byte %q not allowed in name %q", c, s)
		}
		label++
		if label > 63 {
			return "", fmt.Errorf("label longer than 63 bytes in %q", s)
		}
	}
	if label == 0 {
		return "", fmt.Errorf("empty label in %q", s)
	}
	// A numeric last label is an IPv4 literal (or a fragment of one), never a host name
	// (RFC 1123 §2.1, RFC 6066 §3).
	if digitsOnly {
		return "", fmt.Errorf("%q is an address, not a name", s)
	}
	if upper {
		return Name(strings.ToLower(s)), nil // ASCII only here: one allocation
	}
	return Name(s), nil
}

// ParseUnicodeName normalizes a name written by a person (config, CLI): Unicode labels are
// converted to punycode A-labels, then the result must pass ParseName.
func ParseUnicodeName(s string) (Name, error) {
	ascii := true
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			ascii = false
			break
		}
	}
	if !ascii {
		a, err := idna.Lookup.ToASCII(strings.TrimSuffix(s, "."))
		if err != nil {
			return "", fmt.Errorf("%q is not a valid international name: %w", s, err)
		}
		s = a
	}
	return ParseName(s)
}

// Parent returns the name with its first label removed, and false for a one-label name.
func (n Name) Parent() (Name, bool) {
	i := strings.IndexByte(string(n), '.')
	if i < 0 {
		return "", false
	}
	return n[i+1:], true
}

// IsBelow reports whether n is a strict subdomain of base (label boundaries respected:
// "evilexample.com" is not below "example.com").
func (n Name) IsBelow(base Name) bool {
	return len(n) > len(base)+1 && strings.HasSuffix(string(n), string(base)) && n[len(n)-len(base)-1] == '.'
}

// String returns the name as text.
func (n Name) String() string { return string(n) }
