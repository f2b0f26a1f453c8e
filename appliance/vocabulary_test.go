package appliance

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/lnm-project/lnm/allowlist"
	"github.com/lnm-project/lnm/audit"
	"github.com/lnm-project/lnm/dhcp"
	"github.com/lnm-project/lnm/forwarder"
	"github.com/lnm-project/lnm/levelid"
	"github.com/lnm-project/lnm/onboard"
	"github.com/lnm-project/lnm/resolver"
)

// codeReasons is every reason the trail can write, with the kind of record that carries it:
// the allow list's (dns or conn), the resolver's (dns), the forwarder's (conn), and the
// summaries' (the log's own and the trail's).
func codeReasons() map[string][]audit.Kind {
	out := map[string][]audit.Kind{}
	add := func(r string, kinds ...audit.Kind) { out[r] = kinds }
	for _, r := range allowlist.Reasons() {
		add(string(r), audit.KindDNS, audit.KindConn)
	}
	for _, r := range resolver.Reasons() {
		add(string(r), audit.KindDNS)
	}
	for _, r := range forwarder.Reasons() {
		add(string(r), audit.KindConn)
	}
	for _, r := range levelid.Reasons() {
		add(string(r), audit.KindConn)
	}
	for _, r := range append(audit.Reasons(), SummaryReasons()...) {
		add(r, audit.KindSummary)
	}
	for _, r := range dhcp.Reasons() {
		add(string(r), audit.KindDHCP)
	}
	return out
}

// docSection returns the lines of docs/audit-records.md from the heading to the next one of
// the same or a higher level.
func docSection(t *testing.T, heading string) []string {
	t.Helper()
	doc, err := os.ReadFile("../docs/audit-records.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(doc), "\n"+heading+"\n")
	if !ok {
		t.Fatalf("docs/audit-records.md has no %q", heading)
	}
	level := strings.Index(heading, " ") + 1 // "## " ends a "## " section, "### " does not
	var out []string
	for line := range strings.Lines(rest) {
		if strings.HasPrefix(line, "#") && strings.Index(line, " ")+1 <= level {
			break
		}
		out = append(out, strings.TrimSuffix(line, "\n"))
	}
	return out
}

var backticked = regexp.MustCompile("`([^`]+)`")

// TestDocReasons keeps the Reasons table of docs/audit-records.md exact: every reason the
// code defines has a row naming the kind of record that carries it, and every row is a
// reason the code defines.
func TestDocReasons(t *testing.T) {
	want := codeReasons()
	doc := map[string]string{} // reason → its Kinds cell
	for _, line := range docSection(t, "## Reasons") {
		cells := strings.Split(line, "|")
		if len(cells) < 4 || !strings.HasPrefix(strings.TrimSpace(cells[1]), "`") {
			continue // not a row of the table
		}
		m := backticked.FindStringSubmatch(cells[1])
		if m == nil {
			t.Fatalf("row without a reason: %s", line)
		}
		if _, dup := doc[m[1]]; dup {
			t.Errorf("%s has two rows", m[1])
		}
		doc[m[1]] = cells[2]
	}
	for r, kinds := range want {
		cell, ok := doc[r]
		if !ok {
			t.Errorf("reason %s is written by the code but not in the doc's Reasons table", r)
			continue
		}
		if !slices.ContainsFunc(kinds, func(k audit.Kind) bool { return strings.Contains(cell, string(k)) }) {
			t.Errorf("reason %s: the doc says kinds %q, the code writes it on %v", r, strings.TrimSpace(cell), kinds)
		}
	}
	for r := range doc {
		if _, ok := want[r]; !ok {
			t.Errorf("the doc's Reasons table names %s, which no code defines", r)
		}
	}
	// Words the rest of the code uses must be words of the vocabulary.
	for _, r := range onboard.CuredReasons() {
		if _, ok := want[r]; !ok {
			t.Errorf("suggest names reason %s, which no code defines", r)
		}
	}
}

// TestDocVerdicts: the verdict field's row names exactly the audit verdicts, and every
// verdict of the resolver and the forwarder becomes one of them.
func TestDocVerdicts(t *testing.T) {
	var row string
	for _, line := range docSection(t, "## Fields") {
		if strings.HasPrefix(line, "| `verdict` |") {
			row = line
		}
	}
	if row == "" {
		t.Fatal("no verdict row in the Fields table")
	}
	// The meaning cell's first sentence lists the verdicts, and nothing else in backticks.
	first, _, _ := strings.Cut(strings.Split(row, "|")[4], ". ")
	var named []string
	for _, m := range backticked.FindAllStringSubmatch(first, -1) {
		named = append(named, m[1])
		if !slices.Contains(audit.Verdicts(), m[1]) {
			t.Errorf("the doc lists verdict %s, which the code never writes", m[1])
		}
	}
	for _, v := range audit.Verdicts() {
		if !slices.Contains(named, v) {
			t.Errorf("verdict %s is not in the first sentence of the doc's verdict row", v)
		}
	}
	for _, v := range resolver.Verdicts() {
		if got := dnsVerdict(v); !slices.Contains(audit.Verdicts(), got) {
			t.Errorf("resolver verdict %s is recorded as %q, not an audit verdict", v, got)
		}
	}
	for _, v := range forwarder.Verdicts() {
		if got := connVerdict(v); !slices.Contains(audit.Verdicts(), got) || got != v.String() {
			t.Errorf("forwarder verdict %s is recorded as %q", v, got)
		}
	}
}

// TestDocExampleReasons: the example records use the vocabulary.
func TestDocExampleReasons(t *testing.T) {
	want := codeReasons()
	for _, line := range docSection(t, "## Examples") {
		if !strings.HasPrefix(line, "{") {
			continue
		}
		var r audit.Record
		if err := r.UnmarshalJSON([]byte(line)); err != nil {
			t.Fatal(err)
		}
		if _, ok := want[r.Reason]; r.Reason != "" && !ok {
			t.Errorf("example %d has reason %s, which no code defines", r.Seq, r.Reason)
		}
		if r.Verdict != "" && !slices.Contains(audit.Verdicts(), r.Verdict) {
			t.Errorf("example %d has verdict %s", r.Seq, r.Verdict)
		}
	}
}

// TestDocDHCPEvents: the event row names every lease event the DHCP server records.
func TestDocDHCPEvents(t *testing.T) {
	var row string
	for _, line := range docSection(t, "## Fields") {
		if strings.HasPrefix(line, "| `event` |") {
			row = line
		}
	}
	_, dhcpPart, ok := strings.Cut(row, "`dhcp`:")
	if !ok {
		t.Fatalf("the event row does not describe dhcp events: %s", row)
	}
	var named []string
	for _, m := range backticked.FindAllStringSubmatch(dhcpPart, -1) {
		named = append(named, m[1])
	}
	for _, k := range dhcp.EventKinds() {
		if !slices.Contains(named, string(k)) {
			t.Errorf("dhcp event %s is not in the doc's event row", k)
		}
	}
}
