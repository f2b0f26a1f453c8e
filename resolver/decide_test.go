package resolver

import (
	"net/netip"
	"testing"

	"github.com/lnm-project/lnm/allowlist"
)

// TestDecide: the resolver's decision with the box's policy, asserted on verdict and reason.
func TestDecide(t *testing.T) {
	list := mustList(t, "*.azure.test", "api.contoso.test 8883", "opcua.vendor.test from 198.18.3.20/32")
	device, other := netip.MustParseAddr("198.18.3.20"), netip.MustParseAddr("198.18.3.21")
	sources := allowlist.Prefixes{netip.MustParsePrefix("198.18.3.0/24")}
	enforce := &allowlist.Policy{List: list, Sources: sources}
	learn := &allowlist.Policy{List: list, Sources: sources, Learn: true}
	for _, tc := range []struct {
		name    string
		pol     *allowlist.Policy
		qname   allowlist.Name
		client  netip.Addr
		verdict Verdict
		reason  allowlist.Reason
	}{
		{"listed", enforce, "iot.azure.test", device, VerdictAllow, allowlist.ReasonListed},
		{"a port narrows connections, not names", enforce, "api.contoso.test", device, VerdictAllow, allowlist.ReasonListed},
		{"not listed", enforce, "evil.test", device, VerdictDeny, allowlist.ReasonNotListed},
		{"the zone itself has names below", enforce, "azure.test", device, VerdictDeny, ReasonEmptyNonTerminal},
		{"from leaves the device out", enforce, "opcua.vendor.test", other, VerdictDeny, allowlist.ReasonFromMismatch},
		{"outside sources", enforce, "iot.azure.test", netip.MustParseAddr("203.0.113.9"), VerdictRefused, allowlist.ReasonSourceNotAllowed},
		{"learn answers what the list denies", learn, "evil.test", device, VerdictWouldDeny, allowlist.ReasonNotListed},
		{"learn answers an empty non-terminal too", learn, "azure.test", device, VerdictWouldDeny, allowlist.ReasonNotListed},
		{"learn still refuses strangers", learn, "evil.test", netip.MustParseAddr("203.0.113.9"), VerdictRefused, allowlist.ReasonSourceNotAllowed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, reason, _ := Decide(tc.pol, tc.qname, tc.client)
			if v != tc.verdict || reason != tc.reason {
				t.Errorf("Decide(%s from %s) = %v %s, want %v %s", tc.qname, tc.client, v, reason, tc.verdict, tc.reason)
			}
		})
	}
}
