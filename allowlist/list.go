package allowlist

import (
	"fmt"
	"net/netip"
	"slices"
)

// List is an immutable, indexed set of rules. Build one with New; share it freely between
// goroutines. A nil or zero List allows nothing.
type List struct {
	rules    []*Rule           // in match order (most specific first), see Ordered
	exact    map[Name][]*Rule  // Exact rules by base
	wildcard map[Name][]*Rule  // Wildcard rules by base
	apex     map[Name][]*Rule  // Apex rules by base
	interior map[Name]struct{} // names that are not matched but have matched names below them
}

// New indexes the rules. Two rules that say exactly the same thing are an error naming both
// origins; overlapping rules are fine and the most specific one decides.
func New(rules []Rule) (*List, error) {
	l := &List{
		exact:    map[Name][]*Rule{},
		wildcard: map[Name][]*Rule{},
		apex:     map[Name][]*Rule{},
		interior: map[Name]struct{}{},
	}
	for i := range rules {
		r := &rules[i]
		if r.Pattern.Base == "" {
			return nil, fmt.Errorf("allowlist: rule %d has no name", i+1)
		}
		for _, prev := range l.rules {
			if prev.sameAs(r) {
				return nil, fmt.Errorf("allowlist: duplicate rule %q%s (first at %s)", r.String(), at(r.Origin), prev.Origin)
			}
		}
		l.rules = append(l.rules, r)
		idx := l.exact
		switch r.Pattern.Kind {
		case Wildcard:
			idx = l.wildcard
			l.interior[r.Pattern.Base] = struct{}{}
		case Apex:
			idx = l.apex
			l.interior[r.Pattern.Base] = struct{}{}
		}
		idx[r.Pattern.Base] = append(idx[r.Pattern.Base], r)
		for n, ok := r.Pattern.Base.Parent(); ok; n, ok = n.Parent() {
			l.interior[n] = struct{}{}
		}
	}
	for _, m := range []map[Name][]*Rule{l.exact, l.wildcard, l.apex} {
		for _, rs := range m {
			slices.SortStableFunc(rs, narrowerFirst)
		}
	}
	slices.SortStableFunc(l.rules, func(a, b *Rule) int {
		if c := depth(b.Pattern.Base) - depth(a.Pattern.Base); c != 0 {
			return c // deeper base first
		}
		if c := int(a.Pattern.Kind) - int(b.Pattern.Kind); c != 0 {
			return c // exact, then *.x, then .x
		}
		return narrowerFirst(a, b)
	})
	return l, nil
}

func at(origin string) string {
	if origin == "" {
		return ""
	}
	return " at " + origin
}

// narrowerFirst orders rules with the same pattern: source-restricted before unrestricted,
// port-restricted before any-port, then as written.
func narrowerFirst(a, b *Rule) int {
	if c := boolRank(len(a.From) > 0) - boolRank(len(b.From) > 0); c != 0 {
		return c
	}
	return boolRank(len(a.Ports) > 0) - boolRank(len(b.Ports) > 0)
}

func boolRank(narrow bool) int {
	if narrow {
		return 0
	}
	return 1
}

func depth(n Name) int {
	d := 1
	for i := 0; i < len(n); i++ {
		if n[i] == '.' {
			d++
		}
	}
	return d
}

// Ordered returns the rules in match order: the first rule that matches a name, port and
// source decides. Callers must not modify them.
func (l *List) Ordered() []*Rule {
	if l == nil {
		return nil
	}
	return l.rules
}

// Len returns the number of rules.
func (l *List) Len() int { return len(l.Ordered()) }

// Query is what a decision is asked about.
type Query struct {
	Name   Name
	Port   uint16     // the port the device connected to; 0 for a DNS question
	Source netip.Addr // the device's address
}

// Verdict is the outcome of a decision.
type Verdict uint8

const (
	Deny Verdict = iota // the zero Decision denies
	Allow
)

func (v Verdict) String() string {
	if v == Allow {
		return "allow"
	}
	return "deny"
}

// Reason explains a verdict in a word that audit records and metrics can carry.
type Reason string

const (
	ReasonListed         Reason = "listed"           // a rule matched name, port and source
	ReasonNotListed      Reason = "not_listed"       // no rule matches the name
	ReasonPortNotAllowed Reason = "port_not_allowed" // a rule matches the name, but not on this port
	ReasonFromMismatch   Reason = "from_mismatch"    // a rule matches the name and port, but its `from` leaves out the device
	// ReasonSourceNotAllowed: the device is outside the box's `sources`. The resolver and the
	// forwarder check that before asking the list, and both record it with this one word.
	ReasonSourceNotAllowed Reason = "source_not_allowed"
)

// Reasons lists every reason this package defines, for documentation tests.
func Reasons() []Reason {
	return []Reason{ReasonListed, ReasonNotListed, ReasonPortNotAllowed, ReasonFromMismatch, ReasonSourceNotAllowed}
}

// Decision is the answer to a Query. Rule is the rule that allowed it, or for a denial the
// nearest rule that matched the name, if any.
type Decision struct {
	Verdict Verdict
	Reason  Reason
	Rule    *Rule
	// Learned is set when the list denied the query and a Policy in learn mode let it
	// through: Verdict is Allow, Reason and Rule are the denial's.
	Learned bool
}

// Decide finds the most specific rule that matches the query: the deepest base first, an exact
// name before *.base before .base, and among rules with the same pattern, source- and
// port-restricted rules first. It does not allocate.
func (l *List) Decide(q Query) Decision {
	d := Decision{Reason: ReasonNotListed}
	if l == nil || q.Name == "" {
		return d
	}
	if d.try(l.exact[q.Name], q) || d.try(l.apex[q.Name], q) {
		return d
	}
	for n, ok := q.Name.Parent(); ok; n, ok = n.Parent() {
		if d.try(l.wildcard[n], q) || d.try(l.apex[n], q) {
			return d
		}
	}
	return d
}

// try looks for an allowing rule among rules that all match the name. On failure it keeps
// the first near miss, which explains the denial.
func (d *Decision) try(rules []*Rule, q Query) bool {
	for _, r := range rules {
		okPort, okSource := r.allowsPort(q.Port), r.allowsSource(q.Source)
		if okPort && okSource {
			*d = Decision{Verdict: Allow, Reason: ReasonListed, Rule: r}
			return true
		}
		if d.Rule == nil {
			d.Rule = r
			d.Reason = ReasonFromMismatch
			if !okPort {
				d.Reason = ReasonPortNotAllowed
			}
		}
	}
	return false
}

// HasNamesBelow reports whether some name strictly below n could be allowed, so that n itself
// exists in the box's namespace as an empty non-terminal (RFC 8020: answering NXDOMAIN for n
// would tell caches that nothing below it exists).
func (l *List) HasNamesBelow(n Name) bool {
	if l == nil {
		return false
	}
	_, ok := l.interior[n]
	return ok
}
