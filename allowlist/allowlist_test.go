package allowlist

import (
	"net/netip"
	"strings"
	"testing"
)

func TestParseName(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		err      string // substring of the error; "" means success
	}{
		{in: "example.com", want: "example.com"},
		{in: "WWW.Example.COM.", want: "www.example.com"},
		{in: "_dns.resolver.arpa", want: "_dns.resolver.arpa"},
		{in: "xn--bcher-kva.example", want: "xn--bcher-kva.example"},
		{in: "", err: "empty name"},
		{in: ".", err: "empty name"},
		{in: "a..b", err: "empty label"},
		{in: ".a", err: "empty label"},
		{in: "a.b..", err: "empty label"},
		{in: "bücher.example", err: "not allowed"},
		{in: "ex ample.com", err: "not allowed"},
		{in: "a\x00.com", err: "not allowed"},
		{in: "*.example.com", err: "not allowed"},
		{in: "10.0.0.5", err: "is an address"},
		{in: "[::1]", err: "not allowed"},
		{in: "::1", err: "not allowed"},
		{in: strings.Repeat("a", 64) + ".com", err: "longer than 63"},
		{in: strings.Repeat("a", 63) + ".com", want: strings.Repeat("a", 63) + ".com"},
		{in: strings.Repeat("abcdefghi.", 26) + "com", err: "longer than 253"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseName(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("ParseName(%q) = %q, %v; want error containing %q", tc.in, got, err, tc.err)
				}
				return
			}
			if err != nil || string(got) != tc.want {
				t.Fatalf("ParseName(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
			}
		})
	}
}

func TestParsePattern(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Pattern
		err  string
	}{
		{in: "api.example.com", want: Pattern{Exact, "api.example.com"}},
		{in: "*.Example.com.", want: Pattern{Wildcard, "example.com"}},
		{in: ".example.com", want: Pattern{Apex, "example.com"}},
		{in: "bücher.example", want: Pattern{Exact, "xn--bcher-kva.example"}},
		{in: "*.münchen.test", want: Pattern{Wildcard, "xn--mnchen-3ya.test"}},
		{in: "*", err: "'*' is allowed only"},
		{in: "*.", err: "no name after"},
		{in: ".", err: "no name after"},
		{in: "..example.com", err: "no name after"},
		{in: "*example.com", err: "'*' is allowed only"},
		{in: "a.*.com", err: "'*' is allowed only"},
		{in: "*.*.com", err: "'*' is allowed only"},
		{in: "example.*", err: "'*' is allowed only"},
		{in: "192.168.1.1", err: "is an address"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParsePattern(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("ParsePattern(%q) = %v, %v; want error containing %q", tc.in, got, err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("ParsePattern(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
			}
			if back, err := ParsePattern(got.String()); err != nil || back != got {
				t.Fatalf("round trip of %q through %q gave %+v, %v", tc.in, got.String(), back, err)
			}
		})
	}
}

func TestPatternMatch(t *testing.T) {
	names := []string{"example.com", "www.example.com", "a.b.example.com", "evilexample.com",
		"example.com.evil.net", "com", "xn--bcher-kva.example.com"}
	for _, tc := range []struct {
		pattern string
		matches []string
	}{
		{"example.com", []string{"example.com"}},
		{"www.example.com", []string{"www.example.com"}},
		{"*.example.com", []string{"www.example.com", "a.b.example.com", "xn--bcher-kva.example.com"}},
		{".example.com", []string{"example.com", "www.example.com", "a.b.example.com", "xn--bcher-kva.example.com"}},
		{"*.com", []string{"example.com", "www.example.com", "a.b.example.com", "evilexample.com", "xn--bcher-kva.example.com"}},
	} {
		t.Run(tc.pattern, func(t *testing.T) {
			p, err := ParsePattern(tc.pattern)
			if err != nil {
				t.Fatal(err)
			}
			for _, n := range names {
				want := false
				for _, m := range tc.matches {
					want = want || m == n
				}
				if got := p.Match(Name(n)); got != want {
					t.Errorf("%s.Match(%s) = %v, want %v", tc.pattern, n, got, want)
				}
			}
		})
	}
	if (Pattern{}).Match("") {
		t.Error("zero pattern matched the empty name")
	}
}

func mustRule(t testing.TB, pattern string, opts ...func(*Rule)) Rule {
	t.Helper()
	p, err := ParsePattern(pattern)
	if err != nil {
		t.Fatal(err)
	}
	r := Rule{Pattern: p}
	for _, o := range opts {
		o(&r)
	}
	return r
}

func ports(p ...uint16) func(*Rule) { return func(r *Rule) { r.Ports = p } }
func from(cidrs ...string) func(*Rule) {
	return func(r *Rule) {
		for _, c := range cidrs {
			r.From = append(r.From, netip.MustParsePrefix(c))
		}
	}
}
func origin(o string) func(*Rule) { return func(r *Rule) { r.Origin = o } }

// level3 is the allow list of examples/level3.conf.
func level3(t testing.TB) *List {
	t.Helper()
	to, err := ParseTarget("198.18.4.20:443")
	if err != nil {
		t.Fatal(err)
	}
	l, err := New([]Rule{
		mustRule(t, ".contoso.test", origin("a:1")),
		mustRule(t, "*.azure.test", origin("a:2")),
		mustRule(t, "mqtt.vendor.test", ports(8883), origin("a:3")),
		mustRule(t, "opcua.vendor.test", ports(443), from("198.18.3.20/32"), origin("a:4")),
		mustRule(t, "historian.plant.test", ports(443), func(r *Rule) { r.To = to }, origin("a:5")),
	})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestDecide(t *testing.T) {
	l := level3(t)
	dev := netip.MustParseAddr("198.18.3.20")
	other := netip.MustParseAddr("198.18.3.21")
	for _, tc := range []struct {
		name   string
		q      Query
		want   Verdict
		reason Reason
		origin string
	}{
		{"apex itself", Query{"contoso.test", 443, dev}, Allow, ReasonListed, "a:1"},
		{"below apex", Query{"www.contoso.test", 8883, dev}, Allow, ReasonListed, "a:1"},
		{"wildcard one level", Query{"api.azure.test", 443, dev}, Allow, ReasonListed, "a:2"},
		{"wildcard any depth", Query{"a.b.c.azure.test", 443, dev}, Allow, ReasonListed, "a:2"},
		{"wildcard not base", Query{"azure.test", 443, dev}, Deny, ReasonNotListed, ""},
		{"label boundary", Query{"evilcontoso.test", 443, dev}, Deny, ReasonNotListed, ""},
		{"suffix trick", Query{"contoso.test.evil.net", 443, dev}, Deny, ReasonNotListed, ""},
		{"port rule right port", Query{"mqtt.vendor.test", 8883, dev}, Allow, ReasonListed, "a:3"},
		{"port rule wrong port", Query{"mqtt.vendor.test", 443, dev}, Deny, ReasonPortNotAllowed, "a:3"},
		{"dns ignores ports", Query{"mqtt.vendor.test", 0, dev}, Allow, ReasonListed, "a:3"},
		{"from rule admitted", Query{"opcua.vendor.test", 443, dev}, Allow, ReasonListed, "a:4"},
		{"from rule other device", Query{"opcua.vendor.test", 443, other}, Deny, ReasonFromMismatch, "a:4"},
		{"from rule dns other device", Query{"opcua.vendor.test", 0, other}, Deny, ReasonFromMismatch, "a:4"},
		{"from rule 4in6 source", Query{"opcua.vendor.test", 443, netip.MustParseAddr("::ffff:198.18.3.20")}, Allow, ReasonListed, "a:4"},
		{"not listed", Query{"blocked.evil.test", 443, dev}, Deny, ReasonNotListed, ""},
		{"empty name", Query{"", 443, dev}, Deny, ReasonNotListed, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := l.Decide(tc.q)
			if d.Verdict != tc.want || d.Reason != tc.reason {
				t.Fatalf("Decide(%+v) = %v/%s, want %v/%s", tc.q, d.Verdict, d.Reason, tc.want, tc.reason)
			}
			got := ""
			if d.Rule != nil {
				got = d.Rule.Origin
			}
			if got != tc.origin {
				t.Fatalf("Decide(%+v) rule at %q, want %q", tc.q, got, tc.origin)
			}
		})
	}
}

func TestMostSpecificWins(t *testing.T) {
	l, err := New([]Rule{
		mustRule(t, ".example.com", origin("apex")),
		mustRule(t, "*.example.com", ports(8883), origin("wild")),
		mustRule(t, "*.b.example.com", origin("deep-wild")),
		mustRule(t, "a.b.example.com", ports(443), origin("exact")),
		mustRule(t, "a.b.example.com", ports(443), from("10.0.0.0/8"), origin("exact-from")),
	})
	if err != nil {
		t.Fatal(err)
	}
	src := netip.MustParseAddr("10.1.1.1")
	outside := netip.MustParseAddr("192.0.2.1")
	for _, tc := range []struct {
		q    Query
		want string
	}{
		{Query{"a.b.example.com", 443, src}, "exact-from"},
		{Query{"a.b.example.com", 443, outside}, "exact"},
		{Query{"a.b.example.com", 8883, src}, "deep-wild"},
		{Query{"x.example.com", 8883, src}, "wild"},
		{Query{"x.example.com", 443, src}, "apex"},
		{Query{"example.com", 8883, src}, "apex"},
	} {
		if d := l.Decide(tc.q); d.Rule == nil || d.Rule.Origin != tc.want || d.Verdict != Allow {
			t.Errorf("Decide(%+v) = %+v, want allow by %s", tc.q, d, tc.want)
		}
	}
	var order []string
	for _, r := range l.Ordered() {
		order = append(order, r.Origin)
	}
	if got, want := strings.Join(order, " "), "exact-from exact deep-wild wild apex"; got != want {
		t.Errorf("match order %q, want %q", got, want)
	}
}

func TestDuplicateRule(t *testing.T) {
	_, err := New([]Rule{
		mustRule(t, "a.example.com", ports(443), origin("f:1")),
		mustRule(t, "a.example.com", ports(8883), origin("f:2")),
		mustRule(t, "A.example.com.", ports(443), origin("f:3")),
	})
	if err == nil || !strings.Contains(err.Error(), "at f:3 (first at f:1)") {
		t.Fatalf("New with a duplicate = %v, want a duplicate error naming both origins", err)
	}
}

func TestHasNamesBelow(t *testing.T) {
	l := level3(t)
	for name, want := range map[Name]bool{
		"azure.test":       true, // *.azure.test
		"test":             true,
		"vendor.test":      true, // mqtt.vendor.test
		"contoso.test":     true, // below it: www.contoso.test (it is also matched itself)
		"mqtt.vendor.test": false,
		"evil.test":        false,
		"x.azure.test":     false, // matched, not interior
	} {
		if got := l.HasNamesBelow(name); got != want {
			t.Errorf("HasNamesBelow(%s) = %v, want %v", name, got, want)
		}
	}
	var nilList *List
	if nilList.HasNamesBelow("test") || nilList.Decide(Query{Name: "x.test"}).Verdict == Allow {
		t.Error("a nil list must allow nothing")
	}
}

func TestParseTarget(t *testing.T) {
	for _, tc := range []struct{ in, want, err string }{
		{in: "198.18.4.20:443", want: "198.18.4.20:443"},
		{in: "[2001:db8::1]:8883", want: "[2001:db8::1]:8883"},
		{in: "Broker.Plant.Internal:1883", want: "broker.plant.internal:1883"},
		{in: "broker:0", err: "not a number from 1 to 65535"},
		{in: "broker:70000", err: "not a number"},
		{in: "broker", err: "want HOST:PORT"},
		{in: "2001:db8::1:443", err: "brackets"},
		{in: "bad name:443", err: "not allowed"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseTarget(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("ParseTarget(%q) = %v, %v; want error with %q", tc.in, got, err, tc.err)
				}
				return
			}
			if err != nil || got.String() != tc.want {
				t.Fatalf("ParseTarget(%q) = %q, %v; want %q", tc.in, got.String(), err, tc.want)
			}
		})
	}
}

func BenchmarkDecide(b *testing.B) {
	var rules []Rule
	for _, p := range []string{".contoso.test", "*.azure.test", "mqtt.vendor.test", "management.azure.com",
		".dp.kubernetesconfiguration.azure.com", "login.microsoftonline.com", "*.blob.core.windows.net",
		"mcr.microsoft.com", ".data.mcr.microsoft.com", "*.servicebus.windows.net", "graph.microsoft.com"} {
		rules = append(rules, mustRule(b, p))
	}
	l, err := New(rules)
	if err != nil {
		b.Fatal(err)
	}
	src := netip.MustParseAddr("198.18.3.20")
	for _, tc := range []struct{ name, q string }{
		{"exact", "mcr.microsoft.com"},
		{"wildcard-deep", "a.b.c.x.blob.core.windows.net"},
		{"miss", "www.example.com"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			q := Query{Name: Name(tc.q), Port: 443, Source: src}
			b.ReportAllocs()
			for b.Loop() {
				l.Decide(q)
			}
		})
	}
}

func BenchmarkParseName(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		ParseName("Management.Azure.COM.")
	}
}
