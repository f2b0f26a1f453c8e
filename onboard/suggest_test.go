package onboard

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/lnm-project/lnm/allowlist"
	"github.com/lnm-project/lnm/audit"
)

// learnLog is a morning of learn mode on a level-3 box, and some noise Suggest must ignore.
func learnLog() []audit.Record {
	t0 := time.Date(2026, 11, 28, 7, 0, 0, 0, time.UTC)
	var recs []audit.Record
	at := func(min int) time.Time { return t0.Add(time.Duration(min) * time.Minute) }
	dns := func(min int, client, name, verdict, reason string) {
		recs = append(recs, audit.Record{Time: at(min), Kind: audit.KindDNS, Client: netip.AddrPortFrom(netip.MustParseAddr(client), 0),
			Name: name, QType: "A", Verdict: verdict, Reason: reason, Rcode: "NOERROR"})
	}
	conn := func(min int, client, sni string, port uint16, event, verdict, reason string) {
		recs = append(recs, audit.Record{Time: at(min), Kind: audit.KindConn, Client: netip.AddrPortFrom(netip.MustParseAddr(client), 40000),
			Event: event, ID: uint64(len(recs) + 1), Port: port, SNI: sni, Verdict: verdict, Reason: reason})
	}
	const plc, hmi = "198.18.3.20", "198.18.3.21"
	wd, deny := audit.VerdictWouldDeny, audit.VerdictDeny
	// The PLC's telemetry: two queries, a connection (its close is not counted again).
	dns(1, plc, "telemetry.vendor.test", wd, "not_listed")
	conn(1, plc, "telemetry.vendor.test", 443, audit.EventOpen, wd, "not_listed")
	conn(9, plc, "telemetry.vendor.test", 443, audit.EventClose, wd, "eof")
	dns(30, plc, "telemetry.vendor.test", wd, "not_listed")
	// The HMI was denied the same name before learn mode.
	dns(0, hmi, "Telemetry.Vendor.Test.", deny, "not_listed")
	// Three storage accounts under one parent, on two ports.
	for i, n := range []string{"a", "b", "c"} {
		name := n + ".blob.vendor.test"
		dns(10+i, plc, name, wd, "not_listed")
		conn(10+i, plc, name, 443, audit.EventOpen, wd, "not_listed")
	}
	conn(20, hmi, "c.blob.vendor.test", 8883, audit.EventOpen, wd, "not_listed")
	// A deeper name under a collapsed parent joins the wildcard.
	dns(21, hmi, "x.y.blob.vendor.test", wd, "not_listed")
	// The parent itself is a name of its own, not covered by *.blob.vendor.test.
	dns(22, hmi, "blob.vendor.test", wd, "empty_non_terminal")
	// Three names under a public suffix never collapse.
	for i, n := range []string{"one.com", "two.com", "three.com"} {
		dns(40+i, hmi, n, wd, "not_listed")
	}
	// A name on the wrong port.
	conn(50, plc, "mqtt.broker.test", 8883, audit.EventDeny, deny, "port_not_allowed")
	// Already allowed by a rule added since.
	dns(55, plc, "new.vendor.test", wd, "not_listed")
	// Noise: allowed, refused, protocol errors, no SNI, a summary.
	dns(60, plc, "ok.vendor.test", audit.VerdictAllow, "listed")
	dns(61, "203.0.113.9", "outsider.test", audit.VerdictRefused, string(allowlist.ReasonSourceNotAllowed))
	dns(62, plc, "axfr.vendor.test", deny, "zone_transfer")
	conn(63, plc, "", 443, audit.EventDeny, deny, "no_sni")
	recs = append(recs, audit.Record{Time: at(64), Kind: audit.KindSummary, Reason: "audit_queue_full", Count: 9})
	return recs
}

func renderSuggestions(ss []Suggestion) string {
	var b strings.Builder
	for _, s := range ss {
		fmt.Fprintf(&b, "%s | dns %d conn %d | ports %v | clients %v | names %v | %v", s.Rule.String(), s.Queries, s.Conns, s.Ports, s.Clients, s.Names, s.Reasons)
		if s.Note != "" {
			fmt.Fprintf(&b, " | %s", s.Note)
		}
		b.WriteByte('\n')
	}
	return b.String()
}

func TestSuggest(t *testing.T) {
	allowed, err := allowlist.New([]allowlist.Rule{{Pattern: allowlist.Pattern{Base: "new.vendor.test"}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		opt  SuggestOptions
		want string
	}{
		{"every name", SuggestOptions{Allowed: allowed}, `
telemetry.vendor.test 443 | dns 3 conn 1 | ports [443] | clients [198.18.3.20 198.18.3.21] | names [telemetry.vendor.test] | [not_listed]
c.blob.vendor.test 443 8883 | dns 1 conn 2 | ports [443 8883] | clients [198.18.3.20 198.18.3.21] | names [c.blob.vendor.test] | [not_listed]
a.blob.vendor.test 443 | dns 1 conn 1 | ports [443] | clients [198.18.3.20] | names [a.blob.vendor.test] | [not_listed]
b.blob.vendor.test 443 | dns 1 conn 1 | ports [443] | clients [198.18.3.20] | names [b.blob.vendor.test] | [not_listed]
blob.vendor.test | dns 1 conn 0 | ports [] | clients [198.18.3.21] | names [blob.vendor.test] | [empty_non_terminal]
mqtt.broker.test 8883 | dns 0 conn 1 | ports [8883] | clients [198.18.3.20] | names [mqtt.broker.test] | [port_not_allowed]
one.com | dns 1 conn 0 | ports [] | clients [198.18.3.21] | names [one.com] | [not_listed]
three.com | dns 1 conn 0 | ports [] | clients [198.18.3.21] | names [three.com] | [not_listed]
two.com | dns 1 conn 0 | ports [] | clients [198.18.3.21] | names [two.com] | [not_listed]
x.y.blob.vendor.test | dns 1 conn 0 | ports [] | clients [198.18.3.21] | names [x.y.blob.vendor.test] | [not_listed]
`},
		{"collapse 3", SuggestOptions{Collapse: 3, Allowed: allowed}, `
*.blob.vendor.test 443 8883 | dns 4 conn 4 | ports [443 8883] | clients [198.18.3.20 198.18.3.21] | names [a.blob.vendor.test b.blob.vendor.test c.blob.vendor.test x.y.blob.vendor.test] | [not_listed]
telemetry.vendor.test 443 | dns 3 conn 1 | ports [443] | clients [198.18.3.20 198.18.3.21] | names [telemetry.vendor.test] | [not_listed]
blob.vendor.test | dns 1 conn 0 | ports [] | clients [198.18.3.21] | names [blob.vendor.test] | [empty_non_terminal]
mqtt.broker.test 8883 | dns 0 conn 1 | ports [8883] | clients [198.18.3.20] | names [mqtt.broker.test] | [port_not_allowed]
one.com | dns 1 conn 0 | ports [] | clients [198.18.3.21] | names [one.com] | [not_listed] | not collapsed into *.com: it is a public suffix, shared by unrelated owners
three.com | dns 1 conn 0 | ports [] | clients [198.18.3.21] | names [three.com] | [not_listed] | not collapsed into *.com: it is a public suffix, shared by unrelated owners
two.com | dns 1 conn 0 | ports [] | clients [198.18.3.21] | names [two.com] | [not_listed] | not collapsed into *.com: it is a public suffix, shared by unrelated owners
`},
		{"collapse 4 is too many", SuggestOptions{Collapse: 4, Allowed: allowed, Clients: netip.MustParsePrefix("198.18.3.20/32")}, `
telemetry.vendor.test 443 from 198.18.3.20/32 | dns 2 conn 1 | ports [443] | clients [198.18.3.20] | names [telemetry.vendor.test] | [not_listed]
a.blob.vendor.test 443 from 198.18.3.20/32 | dns 1 conn 1 | ports [443] | clients [198.18.3.20] | names [a.blob.vendor.test] | [not_listed]
b.blob.vendor.test 443 from 198.18.3.20/32 | dns 1 conn 1 | ports [443] | clients [198.18.3.20] | names [b.blob.vendor.test] | [not_listed]
c.blob.vendor.test 443 from 198.18.3.20/32 | dns 1 conn 1 | ports [443] | clients [198.18.3.20] | names [c.blob.vendor.test] | [not_listed]
mqtt.broker.test 8883 from 198.18.3.20/32 | dns 0 conn 1 | ports [8883] | clients [198.18.3.20] | names [mqtt.broker.test] | [port_not_allowed]
`},
		{"no list: nothing skipped", SuggestOptions{Clients: netip.MustParsePrefix("198.18.3.20/32"), Collapse: 3}, `
*.blob.vendor.test 443 from 198.18.3.20/32 | dns 3 conn 3 | ports [443] | clients [198.18.3.20] | names [a.blob.vendor.test b.blob.vendor.test c.blob.vendor.test] | [not_listed]
telemetry.vendor.test 443 from 198.18.3.20/32 | dns 2 conn 1 | ports [443] | clients [198.18.3.20] | names [telemetry.vendor.test] | [not_listed]
mqtt.broker.test 8883 from 198.18.3.20/32 | dns 0 conn 1 | ports [8883] | clients [198.18.3.20] | names [mqtt.broker.test] | [port_not_allowed]
new.vendor.test from 198.18.3.20/32 | dns 1 conn 0 | ports [] | clients [198.18.3.20] | names [new.vendor.test] | [not_listed]
`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := renderSuggestions(Suggest(learnLog(), tc.opt))
			if want := strings.TrimPrefix(tc.want, "\n"); got != want {
				t.Errorf("suggestions\n--- got\n%s--- want\n%s", got, want)
			}
		})
	}
}

// TestSuggestRecordedLog runs Suggest on records written to and read back from a real audit
// log, as `lnm allow suggest --dir` reads them.
func TestSuggestRecordedLog(t *testing.T) {
	dir := t.TempDir()
	l, err := audit.Open(audit.Config{Dir: dir, MaxAge: 100 * 365 * 24 * time.Hour}) // retention must keep fixed dates
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range learnLog() {
		if err := l.Append(&r); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	var recs []audit.Record
	for _, v := range []string{audit.VerdictWouldDeny, audit.VerdictDeny} {
		err := audit.Read(dir, audit.Filter{Verdict: v}, func(r *audit.Record) bool {
			recs = append(recs, *r)
			return true
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	got := Suggest(recs, SuggestOptions{Collapse: 3})
	want := Suggest(learnLog(), SuggestOptions{Collapse: 3})
	if g, w := renderSuggestions(got), renderSuggestions(want); g != w {
		t.Errorf("from the log\n%s\nin memory\n%s", g, w)
	}
	if len(got) == 0 || got[0].First.IsZero() || got[0].Last.Before(got[0].First) {
		t.Errorf("first suggestion's times: %v .. %v", got[0].First, got[0].Last)
	}
	// Every suggestion is a valid rule, and together they make a list.
	rules := make([]allowlist.Rule, len(got))
	for i, s := range got {
		rules[i] = s.Rule
	}
	if _, err := allowlist.New(rules); err != nil {
		t.Fatal(err)
	}
}

// TestSuggestApplied: once the suggestions are rules, the same records suggest nothing.
func TestSuggestApplied(t *testing.T) {
	for _, collapse := range []int{0, 2, 3} {
		ss := Suggest(learnLog(), SuggestOptions{Collapse: collapse})
		rules := make([]allowlist.Rule, len(ss))
		for i, s := range ss {
			rules[i] = s.Rule
		}
		list, err := allowlist.New(rules)
		if err != nil {
			t.Fatal(err)
		}
		if again := Suggest(learnLog(), SuggestOptions{Collapse: collapse, Allowed: list}); len(again) != 0 {
			t.Errorf("collapse %d: applied suggestions still suggest\n%s", collapse, renderSuggestions(again))
		}
	}
}

func BenchmarkSuggest(b *testing.B) {
	base := learnLog()
	recs := make([]audit.Record, 0, 100*len(base))
	for i := 0; i < 100; i++ {
		for _, r := range base {
			r.Client = netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, byte(i), 1}), r.Client.Port())
			recs = append(recs, r)
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		Suggest(recs, SuggestOptions{Collapse: 3})
	}
}

// TestSuggestSharedSuffix: a collapse into a suffix on the private part of the public suffix
// list (many tenants' names) is made, since Microsoft's own lists do it, but flagged.
func TestSuggestSharedSuffix(t *testing.T) {
	var recs []audit.Record
	for _, n := range []string{"a", "b", "c"} {
		recs = append(recs, audit.Record{Kind: audit.KindDNS, Client: netip.MustParseAddrPort("10.0.0.1:0"),
			Name: n + ".servicebus.windows.net", Verdict: audit.VerdictWouldDeny, Reason: "not_listed"})
	}
	got := renderSuggestions(Suggest(recs, SuggestOptions{Collapse: 3}))
	const want = "*.servicebus.windows.net | dns 3 conn 0 | ports [] | clients [10.0.0.1] | names [a.servicebus.windows.net b.servicebus.windows.net c.servicebus.windows.net] | [not_listed] | *.servicebus.windows.net is a suffix that many owners share (public suffix list): it admits every one of their names\n"
	if got != want {
		t.Errorf("got\n%swant\n%s", got, want)
	}
}
