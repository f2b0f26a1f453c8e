package allowlist

import (
	"net/netip"
	"testing"
)

// TestDecideAddr: an address is allowed only by a rule whose `to` names it and its port, on
// that port and from that device; learn mode does not open addresses.
func TestDecideAddr(t *testing.T) {
	var rules []Rule
	for _, words := range [][]string{
		{"historian.plant.test", "443", "to", "198.18.4.20:443"},
		{"opcua.plant.test", "from", "198.18.3.20/32", "to", "198.18.4.21:4840"},
		{"named.plant.test", "to", "historian.plant.test:443"},
		{".contoso.test"},
	} {
		r, err := ParseRule(words[0], words[1:])
		if err != nil {
			t.Fatal(err)
		}
		rules = append(rules, r)
	}
	l, err := New(rules)
	if err != nil {
		t.Fatal(err)
	}
	dev, other := netip.MustParseAddr("198.18.3.20"), netip.MustParseAddr("198.18.3.21")
	for _, tc := range []struct {
		name  string
		dst   string
		src   netip.Addr
		learn bool
		want  Verdict
		rule  string
	}{
		{"to names it", "198.18.4.20:443", dev, false, Allow, "historian.plant.test"},
		{"mapped source", "198.18.4.20:443", netip.MustParseAddr("::ffff:198.18.3.21"), false, Allow, "historian.plant.test"},
		{"another port", "198.18.4.20:8443", dev, false, Deny, ""},
		{"another address", "198.18.4.22:443", dev, false, Deny, ""},
		{"from admits", "198.18.4.21:4840", dev, false, Allow, "opcua.plant.test"},
		{"from refuses", "198.18.4.21:4840", other, false, Deny, ""},
		{"learn mode does not open addresses", "198.18.5.10:443", dev, true, Deny, ""},
		{"public address", "203.0.113.10:443", dev, false, Deny, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := Policy{List: l, Learn: tc.learn}
			d := p.DecideAddr(netip.MustParseAddrPort(tc.dst), tc.src)
			got := ""
			if d.Rule != nil {
				got = d.Rule.Pattern.String()
			}
			if d.Verdict != tc.want || got != tc.rule {
				t.Fatalf("got %v by %q (%s), want %v by %q", d.Verdict, got, d.Reason, tc.want, tc.rule)
			}
			if d.Verdict == Deny && d.Reason != ReasonNotListed {
				t.Fatalf("reason %s", d.Reason)
			}
		})
	}
	p := Policy{List: l, Sources: Prefixes{netip.MustParsePrefix("198.18.3.0/24")}}
	if d := p.DecideAddr(netip.MustParseAddrPort("198.18.4.20:443"), netip.MustParseAddr("198.18.9.1")); d.Reason != ReasonSourceNotAllowed {
		t.Fatalf("outside sources: %s", d.Reason)
	}
}
