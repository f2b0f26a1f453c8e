package allowlist

import (
	"fmt"
	"strings"
)

// Kind is how a pattern matches names relative to its base name.
type Kind uint8

const (
	// Exact matches the base name only: "api.example.com".
	Exact Kind = iota
	// Wildcard matches every name below the base, at any depth, never the base itself:
	// "*.example.com". This is the Lnm custom resource's and Envoy's meaning, not RFC 6125's
	// one-label wildcard.
	Wildcard
	// Apex matches the base and every name below it: ".example.com" (dnsmasq's meaning).
	Apex
)

// Pattern is one rule's name pattern. The zero value is an Exact pattern with an empty base,
// which matches nothing.
type Pattern struct {
	Kind Kind
	Base Name
}

// ParsePattern reads a pattern as written in config or on the command line. Unicode names
// become punycode. Any '*' other than a leading "*." is an error, as is a lone "*".
func ParsePattern(s string) (Pattern, error) {
	var p Pattern
	rest := s
	switch {
	case strings.HasPrefix(s, "*."):
		p.Kind, rest = Wildcard, s[2:]
	case strings.HasPrefix(s, "."):
		p.Kind, rest = Apex, s[1:]
	}
	if strings.Contains(rest, "*") {
		return Pattern{}, fmt.Errorf("pattern %q: '*' is allowed only as a whole first label (\"*.example.com\")", s)
	}
	if rest == "" || strings.HasPrefix(rest, ".") {
		return Pattern{}, fmt.Errorf("pattern %q has no name after its prefix", s)
	}
	n, err := ParseUnicodeName(rest)
	if err != nil {
		return Pattern{}, fmt.Errorf("pattern %q: %w", s, err)
	}
	p.Base = n
	return p, nil
}

// Match reports whether the pattern matches the name.
func (p Pattern) Match(n Name) bool {
	if p.Base == "" {
		return false
	}
	switch p.Kind {
	case Exact:
		return n == p.Base
	case Wildcard:
		return n.IsBelow(p.Base)
	case Apex:
		return n == p.Base || n.IsBelow(p.Base)
	}
	return false
}

// String returns the pattern in the form ParsePattern reads.
func (p Pattern) String() string {
	switch p.Kind {
	case Wildcard:
		return "*." + string(p.Base)
	case Apex:
		return "." + string(p.Base)
	}
	return string(p.Base)
}
