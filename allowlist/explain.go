package allowlist

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// Explanation says why a query got its verdict, for people (`lnm allow test`): the rule that
// allowed it, or for a denial the nearest rule and what to write instead.
type Explanation struct {
	Decision
	// Near is the rule closest to matching a denied query: one that matches the name but not
	// the port or source, or one whose pattern nearly matches the name. Nil when allowed, or
	// when no rule is anything like the name.
	Near *Rule
	// Why is one sentence; empty when allowed.
	Why string
}

// Explain decides q as Decide does and, for a denial, finds the nearest rule and why it did
// not match. It is for people, not the data path: it walks every rule and allocates.
func Explain(l *List, q Query) Explanation {
	e := Explanation{Decision: l.Decide(q)}
	if e.Verdict == Allow {
		return e
	}
	switch e.Reason {
	case ReasonPortNotAllowed, ReasonFromMismatch:
		e.Near, e.Why = narrowed(l, q)
		return e
	}
	if q.Name == "" {
		e.Why = "no name to match"
		return e
	}
	// A rule whose pattern misses the name by its kind: *.x for x, x for something below x.
	for _, r := range l.Ordered() {
		switch {
		case r.Pattern.Kind == Wildcard && q.Name == r.Pattern.Base:
			e.Near = r
			e.Why = fmt.Sprintf("%s does not match %s itself; write .%s to allow both", r.Pattern, q.Name, r.Pattern.Base)
			return e
		case r.Pattern.Kind == Exact && q.Name.IsBelow(r.Pattern.Base):
			e.Near = r
			e.Why = fmt.Sprintf("%s matches only %s, not names below it; write .%s or *.%s", r.Pattern, r.Pattern.Base, r.Pattern.Base, r.Pattern.Base)
			return e
		}
	}
	// Otherwise the rule sharing the longest suffix of labels, if it shares more than the
	// top-level domain: a sibling or cousin name, often a typo or a missing host. Among
	// those, the one fewest edits away.
	best, shared, dist := (*Rule)(nil), 1, 0
	for _, r := range l.Ordered() {
		n := commonLabels(q.Name, r.Pattern.Base)
		if n < shared || n == 1 {
			continue
		}
		d := editDistance(string(q.Name), string(r.Pattern.Base))
		if n > shared || best == nil || d < dist {
			best, shared, dist = r, n, d
		}
	}
	if best != nil {
		e.Near = best
		e.Why = fmt.Sprintf("no rule matches %s; the nearest, %s, is for another name under %s", q.Name, best.Pattern, lastLabels(q.Name, shared))
		return e
	}
	e.Why = fmt.Sprintf("no rule matches %s or any name near it", q.Name)
	return e
}

// narrowed explains a denial by ports or sources, from every rule matching the name: the
// ports they allow, or when some allow this port, the sources they allow it from. The near
// rule is the first in match order that allows the port, else the first matching the name.
func narrowed(l *List, q Query) (*Rule, string) {
	var onPort []*Rule
	var ports []uint16
	var first *Rule
	for _, r := range l.Ordered() {
		if !r.Pattern.Match(q.Name) {
			continue
		}
		if first == nil {
			first = r
		}
		if r.allowsPort(q.Port) {
			onPort = append(onPort, r)
		}
		ports = append(ports, r.Ports...)
	}
	if len(onPort) == 0 {
		slices.Sort(ports)
		ports = slices.Compact(ports)
		text := make([]string, len(ports))
		for i, p := range ports {
			text[i] = strconv.Itoa(int(p))
		}
		return first, fmt.Sprintf("%s is allowed only on %s, not %d", q.Name, strings.Join(text, ", "), q.Port)
	}
	var from []netip.Prefix
	for _, r := range onPort {
		from = append(from, r.From...)
	}
	slices.SortFunc(from, netip.Prefix.Compare)
	from = slices.Compact(from)
	text := make([]string, len(from))
	for i, p := range from {
		text[i] = p.String()
	}
	if !q.Source.IsValid() {
		return onPort[0], fmt.Sprintf("%s is allowed only from %s; name the device to test it", q.Name, strings.Join(text, ", "))
	}
	return onPort[0], fmt.Sprintf("%s is allowed only from %s, not from %s", q.Name, strings.Join(text, ", "), q.Source.Unmap())
}

// commonLabels counts the labels a and b share at their ends.
func commonLabels(a, b Name) int {
	as, bs := strings.Split(string(a), "."), strings.Split(string(b), ".")
	n := 0
	for n < len(as) && n < len(bs) && as[len(as)-1-n] == bs[len(bs)-1-n] {
		n++
	}
	return n
}

// lastLabels returns the last n labels of a name.
func lastLabels(name Name, n int) string {
	labels := strings.Split(string(name), ".")
	return strings.Join(labels[len(labels)-n:], ".")
}

// editDistance is the Levenshtein distance between two short names.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
