package adminapi

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/lnm-project/lnm/allowlist"
)

// TestSpecOf: a rule survives the trip through the admin API's form.
func TestSpecOf(t *testing.T) {
	p, err := allowlist.ParsePattern("broker.plant.test")
	if err != nil {
		t.Fatal(err)
	}
	r := allowlist.Rule{
		Pattern: p,
		Ports:   []uint16{443, 8883},
		From:    []netip.Prefix{netip.MustParsePrefix("10.3.0.0/16"), netip.MustParsePrefix("2001:db8::/32")},
		To:      allowlist.Target{Name: "broker.plant.internal", Port: 8883},
	}
	private := allowlist.Rule{Pattern: p, Ports: []uint16{5432}, Private: true}
	for _, r := range []allowlist.Rule{r, private} {
		back, err := SpecOf(r, "why").Rule()
		if err != nil {
			t.Fatal(err)
		}
		if back.String() != r.String() {
			t.Errorf("SpecOf(%q).Rule() = %q", r.String(), back.String())
		}
	}
}

// TestRuleSpecErrors: a spec is checked with the allow-line grammar; the error starts with
// the pattern when the pattern itself was fine.
func TestRuleSpecErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		spec RuleSpec
		want string
	}{
		{"bad pattern", RuleSpec{Pattern: "a*.test"}, `pattern "a*.test": '*' is allowed only`},
		{"port 0", RuleSpec{Pattern: "a.test", Ports: []int{0}}, `a.test: port "0": want a number from 1 to 65535`},
		{"port too big", RuleSpec{Pattern: "a.test", Ports: []int{70000}}, `a.test: port "70000": want a number from 1 to 65535`},
		{"port twice", RuleSpec{Pattern: "a.test", Ports: []int{443, 443}}, "a.test: port 443 given twice in one rule"},
		{"from not a prefix", RuleSpec{Pattern: "a.test", From: []string{"ten"}}, `a.test: from: "ten" is not a CIDR or an address`},
		{"from host bits", RuleSpec{Pattern: "a.test", From: []string{"10.0.0.1/8"}}, "a.test: from: 10.0.0.1/8 has bits set past /8"},
		{"from twice", RuleSpec{Pattern: "a.test", From: []string{"10.0.0.0/8", "10.0.0.0/8"}}, "a.test: from: 10.0.0.0/8 given twice"},
		{"to without port", RuleSpec{Pattern: "a.test", To: "b.test"}, `a.test: to: destination "b.test": want HOST:PORT`},
		{"from keyword as source", RuleSpec{Pattern: "a.test", From: []string{"from"}}, "a.test: from given twice in one rule"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.spec.Rule()
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("Rule() = %v, want an error starting %q", err, tc.want)
			}
		})
	}
}
