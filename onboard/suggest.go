package onboard

// Suggest turns what the box denied, or in learn mode would have denied, into proposed
// rules: the onboarding loop is `mode learn`, let the plant run, `lnm allow suggest`, review,
// `--apply`, `mode enforce`.

import (
	"cmp"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"time"

	"golang.org/x/net/publicsuffix"

	"github.com/lnm-project/lnm/allowlist"
	"github.com/lnm-project/lnm/audit"
)

// SuggestOptions tunes Suggest. The zero value proposes one exact rule per name, for every
// device, skipping nothing.
type SuggestOptions struct {
	// Collapse folds names into one "*.PARENT" rule when Collapse or more distinct names
	// sit directly under PARENT. Zero: never collapse.
	Collapse int
	// Clients keeps only records from devices in this prefix, and narrows every proposed
	// rule to it (from CLIENTS). Zero: every device, and rules without from.
	Clients netip.Prefix
	// Allowed is the list in force now: records it would allow (a rule added since) are
	// skipped. Nil: nothing skipped.
	Allowed *allowlist.List
}

// Suggestion is one proposed rule and the evidence for it.
type Suggestion struct {
	// Rule is the proposal: the name (or "*.PARENT" when collapsed), the ports the
	// connections used (none when only DNS was seen: any proxy port), and from CLIENTS
	// when SuggestOptions.Clients is set. Origin is "suggest".
	Rule allowlist.Rule
	// Names are the distinct names seen that the rule covers, sorted.
	Names []allowlist.Name
	// Queries and Conns count the dns records and the conn records (open or deny).
	Queries, Conns int
	// Ports are the ports connections used, sorted.
	Ports []uint16
	// Clients are the devices that needed the names, sorted.
	Clients []netip.Addr
	// Reasons are the denial reasons seen (not_listed, port_not_allowed, …), sorted.
	Reasons []string
	// First and Last are the times of the first and last record.
	First, Last time.Time
	// Note says what a reviewer should know: a collapse that was refused, or one into a
	// suffix that many owners share. Empty: nothing.
	Note string
}

// Count is the number of records behind the suggestion.
func (s *Suggestion) Count() int { return s.Queries + s.Conns }

// CuredReasons are the denial reasons Suggest turns into rules, for tests that hold the
// vocabulary together.
func CuredReasons() []string { return slices.Clone(suggestReasons) }

// suggestReasons are the denials a rule would cure; protocol errors (malformed, zone
// transfer, …) and sources outside `sources` are not.
var suggestReasons = []string{
	string(allowlist.ReasonNotListed),
	string(allowlist.ReasonPortNotAllowed),
	string(allowlist.ReasonFromMismatch),
	"empty_non_terminal", // resolver.ReasonEmptyNonTerminal, kept a word: onboarding does not import the resolver
}

// Suggest proposes rules from deny and would-deny records, most needed first: by records,
// then devices, then pattern. Other records are ignored, so callers may pass a whole log.
func Suggest(records []audit.Record, opt SuggestOptions) []Suggestion {
	byName := map[allowlist.Name]*Suggestion{}
	for i := range records {
		r := &records[i]
		name, port, ok := suggestable(r, &opt)
		if !ok {
			continue
		}
		s := byName[name]
		if s == nil {
			s = &Suggestion{Names: []allowlist.Name{name}}
			byName[name] = s
		}
		s.observe(r, port)
	}

	names := slices.Sorted(maps.Keys(byName))
	parents, refused := collapseParents(names, opt.Collapse)
	var out []*Suggestion
	wild := map[allowlist.Name]*Suggestion{}
	for _, n := range names {
		s := byName[n]
		parent, ok := coveringParent(n, parents)
		if !ok {
			s.Rule.Pattern = allowlist.Pattern{Kind: allowlist.Exact, Base: n}
			if p, _ := n.Parent(); refused[p] != "" {
				s.Note = refused[p]
			}
			out = append(out, s)
			continue
		}
		w := wild[parent]
		if w == nil {
			w = &Suggestion{Rule: allowlist.Rule{Pattern: allowlist.Pattern{Kind: allowlist.Wildcard, Base: parent}}}
			if _, icann := publicsuffix.PublicSuffix(string(parent)); !icann && isPublicSuffix(parent) {
				w.Note = "*." + string(parent) + " is a suffix that many owners share (public suffix list): it admits every one of their names"
			}
			wild[parent] = w
			out = append(out, w)
		}
		w.merge(s)
	}

	result := make([]Suggestion, len(out))
	for i, s := range out {
		s.finish(&opt)
		result[i] = *s
	}
	slices.SortFunc(result, func(a, b Suggestion) int {
		if c := cmp.Compare(b.Count(), a.Count()); c != 0 {
			return c
		}
		if c := cmp.Compare(len(b.Clients), len(a.Clients)); c != 0 {
			return c
		}
		return strings.Compare(a.Rule.Pattern.String(), b.Rule.Pattern.String())
	})
	return result
}

// suggestable picks the records a rule would cure and returns their name and port.
func suggestable(r *audit.Record, opt *SuggestOptions) (allowlist.Name, uint16, bool) {
	if r.Verdict != audit.VerdictDeny && r.Verdict != audit.VerdictWouldDeny {
		return "", 0, false
	}
	if !slices.Contains(suggestReasons, r.Reason) {
		return "", 0, false
	}
	var text string
	var port uint16
	switch {
	case r.Kind == audit.KindDNS:
		text = r.Name
	case r.Kind == audit.KindConn && (r.Event == audit.EventOpen || r.Event == audit.EventDeny):
		text, port = r.SNI, r.Port
	default:
		return "", 0, false
	}
	client := r.Client.Addr().Unmap()
	if opt.Clients.IsValid() && !opt.Clients.Contains(client) {
		return "", 0, false
	}
	name, err := allowlist.ParseName(text)
	if err != nil {
		return "", 0, false
	}
	if opt.Allowed != nil && opt.Allowed.Decide(allowlist.Query{Name: name, Port: port, Source: client}).Verdict == allowlist.Allow {
		return "", 0, false
	}
	return name, port, true
}

func (s *Suggestion) observe(r *audit.Record, port uint16) {
	if r.Kind == audit.KindDNS {
		s.Queries++
	} else {
		s.Conns++
	}
	if port != 0 {
		s.Ports = append(s.Ports, port)
	}
	if r.Client.IsValid() {
		s.Clients = append(s.Clients, r.Client.Addr().Unmap())
	}
	s.Reasons = append(s.Reasons, r.Reason)
	if s.First.IsZero() || r.Time.Before(s.First) {
		s.First = r.Time
	}
	if r.Time.After(s.Last) {
		s.Last = r.Time
	}
	// Keep the slices short while reading a long log.
	if len(s.Clients) > 64 {
		s.compact()
	}
}

func (s *Suggestion) merge(o *Suggestion) {
	s.Names = append(s.Names, o.Names...)
	s.Queries += o.Queries
	s.Conns += o.Conns
	s.Ports = append(s.Ports, o.Ports...)
	s.Clients = append(s.Clients, o.Clients...)
	s.Reasons = append(s.Reasons, o.Reasons...)
	if s.First.IsZero() || (!o.First.IsZero() && o.First.Before(s.First)) {
		s.First = o.First
	}
	if o.Last.After(s.Last) {
		s.Last = o.Last
	}
}

func (s *Suggestion) compact() {
	slices.Sort(s.Ports)
	s.Ports = slices.Compact(s.Ports)
	slices.SortFunc(s.Clients, netip.Addr.Compare)
	s.Clients = slices.Compact(s.Clients)
	slices.Sort(s.Reasons)
	s.Reasons = slices.Compact(s.Reasons)
}

func (s *Suggestion) finish(opt *SuggestOptions) {
	s.compact()
	slices.Sort(s.Names)
	s.Rule.Ports = slices.Clone(s.Ports)
	if opt.Clients.IsValid() {
		s.Rule.From = []netip.Prefix{opt.Clients.Masked()}
	}
	s.Rule.Origin = "suggest"
}

// collapseParents returns the parents with n or more distinct names directly below them
// that may become "*.PARENT", and for the others a note saying why not. n <= 0: none.
func collapseParents(names []allowlist.Name, n int) (ok []allowlist.Name, refused map[allowlist.Name]string) {
	refused = map[allowlist.Name]string{}
	if n <= 0 {
		return nil, refused
	}
	children := map[allowlist.Name]int{}
	for _, name := range names {
		if p, has := name.Parent(); has {
			children[p]++
		}
	}
	for p, k := range children {
		if k < n {
			continue
		}
		if _, icann := publicsuffix.PublicSuffix(string(p)); icann && isPublicSuffix(p) || !strings.Contains(string(p), ".") {
			refused[p] = "not collapsed into *." + string(p) + ": it is a public suffix, shared by unrelated owners"
			continue
		}
		ok = append(ok, p)
	}
	// Shallowest first, so that *.a.example wins over *.b.a.example.
	slices.SortFunc(ok, func(a, b allowlist.Name) int {
		if c := cmp.Compare(strings.Count(string(a), "."), strings.Count(string(b), ".")); c != 0 {
			return c
		}
		return strings.Compare(string(a), string(b))
	})
	return ok, refused
}

// coveringParent returns the shallowest collapse parent that n lies below.
func coveringParent(n allowlist.Name, parents []allowlist.Name) (allowlist.Name, bool) {
	for _, p := range parents {
		if n.IsBelow(p) {
			return p, true
		}
	}
	return "", false
}

// isPublicSuffix reports whether n is itself on the public suffix list (com, co.uk,
// servicebus.windows.net), not a name registered under one.
func isPublicSuffix(n allowlist.Name) bool {
	s, _ := publicsuffix.PublicSuffix(string(n))
	return s == string(n)
}
