package forwarder_test

import (
	"net/netip"
	"testing"

	"github.com/lnm-project/lnm/allowlist"
	"github.com/lnm-project/lnm/forwarder"
)

// TestDecide: the forwarder's decision with the box's policy, asserted on verdict, reason,
// rule and way out.
func TestDecide(t *testing.T) {
	list := rules(t,
		".contoso.test",
		"mqtt.vendor.test 8883",
		"opcua.vendor.test 443 from 198.18.3.20/32",
		"historian.plant.test 443 to 198.18.4.20:443",
	)
	device, other := netip.MustParseAddr("198.18.3.20"), netip.MustParseAddr("198.18.3.21")
	stranger := netip.MustParseAddr("198.51.100.7")
	enforce := &allowlist.Policy{List: list, Sources: allowlist.Prefixes{netip.MustParsePrefix("198.18.3.0/24")}}
	learn := &allowlist.Policy{List: list, Sources: enforce.Sources, Learn: true}
	for _, tc := range []struct {
		name      string
		pol       *allowlist.Policy
		sni       allowlist.Name
		port      uint16
		src       netip.Addr
		hasParent bool
		verdict   allowlist.Verdict
		learned   bool
		reason    allowlist.Reason
		rule      string // the deciding or nearest rule's origin; "" for none
		via       forwarder.Via
	}{
		{"listed, to the parent", enforce, "api.contoso.test", 443, device, true, allowlist.Allow, false, allowlist.ReasonListed, ".contoso.test", forwarder.ViaParent},
		{"listed, top level", enforce, "contoso.test", 8883, device, false, allowlist.Allow, false, allowlist.ReasonListed, ".contoso.test", forwarder.ViaDirect},
		{"a rule's to wins over the parent", enforce, "historian.plant.test", 443, device, true, allowlist.Allow, false, allowlist.ReasonListed, "historian.plant.test 443 to 198.18.4.20:443", forwarder.ViaTo},
		{"not listed", enforce, "evil.test", 443, device, true, allowlist.Deny, false, allowlist.ReasonNotListed, "", ""},
		{"wrong port", enforce, "mqtt.vendor.test", 443, device, true, allowlist.Deny, false, allowlist.ReasonPortNotAllowed, "mqtt.vendor.test 8883", ""},
		{"from leaves the device out", enforce, "opcua.vendor.test", 443, other, true, allowlist.Deny, false, allowlist.ReasonFromMismatch, "opcua.vendor.test 443 from 198.18.3.20/32", ""},
		{"outside sources", enforce, "api.contoso.test", 443, stranger, true, allowlist.Deny, false, allowlist.ReasonSourceNotAllowed, "", ""},
		{"v4-mapped source is the device", enforce, "opcua.vendor.test", 443, netip.MustParseAddr("::ffff:198.18.3.20"), true, allowlist.Allow, false, allowlist.ReasonListed, "opcua.vendor.test 443 from 198.18.3.20/32", forwarder.ViaParent},
		{"learn lets a denial through to the parent", learn, "evil.test", 443, device, true, allowlist.Allow, true, allowlist.ReasonNotListed, "", forwarder.ViaParent},
		{"learn keeps the nearest rule, not its to", learn, "historian.plant.test", 8443, device, false, allowlist.Allow, true, allowlist.ReasonPortNotAllowed, "historian.plant.test 443 to 198.18.4.20:443", forwarder.ViaDirect},
		{"learn still refuses strangers", learn, "api.contoso.test", 443, stranger, true, allowlist.Deny, false, allowlist.ReasonSourceNotAllowed, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := forwarder.Decide(tc.pol, tc.sni, tc.port, tc.src, tc.hasParent)
			rule := ""
			if d.Rule != nil {
				rule = d.Rule.Origin
			}
			if d.Verdict != tc.verdict || d.Learned != tc.learned || d.Reason != tc.reason || rule != tc.rule || d.Via != tc.via {
				t.Errorf("Decide = %v learned %v %s rule %q via %q; want %v learned %v %s rule %q via %q",
					d.Verdict, d.Learned, d.Reason, rule, d.Via, tc.verdict, tc.learned, tc.reason, tc.rule, tc.via)
			}
		})
	}
}
