package allowlist

import (
	"net/netip"
	"testing"
)

func TestExplain(t *testing.T) {
	l := level3(t)
	extra, err := New(append(rulesOf(l),
		mustRule(t, "*.blob.test", origin("b:1")),
		mustRule(t, "api.factory.test", origin("b:2")),
		mustRule(t, "broker.factory.test", ports(8883), from("10.0.0.0/8"), origin("b:3")),
		mustRule(t, "broker.factory.test", ports(443), from("10.1.0.0/16"), origin("b:4")),
	))
	if err != nil {
		t.Fatal(err)
	}
	dev := netip.MustParseAddr("198.18.3.20")
	other := netip.MustParseAddr("198.18.3.21")
	for _, tc := range []struct {
		name    string
		l       *List
		q       Query
		verdict Verdict
		near    string // origin of Near, "" for none
		why     string
	}{
		{"allowed", l, Query{"api.azure.test", 443, dev}, Allow, "", ""},
		{"wildcard not base", l, Query{"azure.test", 443, dev}, Deny, "a:2",
			"*.azure.test does not match azure.test itself; write .azure.test to allow both"},
		{"wildcard not base dns", extra, Query{"blob.test", 0, dev}, Deny, "b:1",
			"*.blob.test does not match blob.test itself; write .blob.test to allow both"},
		{"exact not below", extra, Query{"v2.api.factory.test", 443, dev}, Deny, "b:2",
			"api.factory.test matches only api.factory.test, not names below it; write .api.factory.test or *.api.factory.test"},
		{"wrong port", l, Query{"mqtt.vendor.test", 443, dev}, Deny, "a:3",
			"mqtt.vendor.test is allowed only on 8883, not 443"},
		{"wrong source", l, Query{"opcua.vendor.test", 443, other}, Deny, "a:4",
			"opcua.vendor.test is allowed only from 198.18.3.20/32, not from 198.18.3.21"},
		{"source unknown", l, Query{"opcua.vendor.test", 443, netip.Addr{}}, Deny, "a:4",
			"opcua.vendor.test is allowed only from 198.18.3.20/32; name the device to test it"},
		{"wrong port among several", extra, Query{"broker.factory.test", 1883, dev}, Deny, "b:3",
			"broker.factory.test is allowed only on 443, 8883, not 1883"},
		{"right port wrong source", extra, Query{"broker.factory.test", 443, netip.MustParseAddr("10.2.0.1")}, Deny, "b:4",
			"broker.factory.test is allowed only from 10.1.0.0/16, not from 10.2.0.1"},
		{"mapped source", l, Query{"opcua.vendor.test", 443, netip.MustParseAddr("::ffff:198.18.3.21")}, Deny, "a:4",
			"opcua.vendor.test is allowed only from 198.18.3.20/32, not from 198.18.3.21"},
		{"sibling", l, Query{"mqtt2.vendor.test", 8883, dev}, Deny, "a:3",
			"no rule matches mqtt2.vendor.test; the nearest, mqtt.vendor.test, is for another name under vendor.test"},
		{"nothing similar", l, Query{"www.example.com", 443, dev}, Deny, "",
			"no rule matches www.example.com or any name near it"},
		{"same tld only", l, Query{"other.test", 443, dev}, Deny, "",
			"no rule matches other.test or any name near it"},
		{"nil list", nil, Query{"a.test", 443, dev}, Deny, "", "no rule matches a.test or any name near it"},
		{"empty name", l, Query{"", 443, dev}, Deny, "", "no name to match"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := Explain(tc.l, tc.q)
			if e.Verdict != tc.verdict {
				t.Fatalf("verdict %v, want %v", e.Verdict, tc.verdict)
			}
			if tc.verdict == Allow && (e.Rule == nil || e.Near != nil || e.Why != "") {
				t.Fatalf("allowed: %+v", e)
			}
			near := ""
			if e.Near != nil {
				near = e.Near.Origin
			}
			if near != tc.near || e.Why != tc.why {
				t.Fatalf("Explain(%+v) = near %q, %q\nwant near %q, %q", tc.q, near, e.Why, tc.near, tc.why)
			}
		})
	}
}

func rulesOf(l *List) []Rule {
	var out []Rule
	for _, r := range l.Ordered() {
		out = append(out, *r)
	}
	return out
}
