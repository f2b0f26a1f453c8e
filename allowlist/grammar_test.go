package allowlist

import (
	"strings"
	"testing"
)

// TestParseRule: the allow-line grammar, what it reads and every way it refuses a line.
func TestParseRule(t *testing.T) {
	for _, tc := range []struct {
		line string
		want string // the rule in canonical config syntax, or the error's start
		err  bool
	}{
		{"api.example.com", "api.example.com", false},
		{"*.azure.test 8883 443", "*.azure.test 443 8883", false},
		{".contoso.test from 198.18.3.20 10.0.0.0/8", ".contoso.test from 10.0.0.0/8 198.18.3.20/32", false},
		{"historian.plant.test 443 to 198.18.4.20:443", "historian.plant.test 443 to 198.18.4.20:443", false},
		{"opcua.vendor.test 443 from 198.18.3.0/24 to broker.plant.test:4840", "opcua.vendor.test 443 from 198.18.3.0/24 to broker.plant.test:4840", false},
		{"historian.plant.test 443 private", "historian.plant.test 443 private", false},
		{"db.plant.test from 198.18.3.0/24 private", "db.plant.test from 198.18.3.0/24 private", false},
		{"a*.example.com", `pattern "a*.example.com"`, true},
		{"a.test example.org", `port "example.org": want a number from 1 to 65535 (one rule per line`, true},
		{"a.test 70000", `port "70000": want a number from 1 to 65535`, true},
		{"a.test 443 443", "port 443 given twice in one rule", true},
		{"a.test from", "from needs one or more CIDRs or addresses", true},
		{"a.test from 10.0.0.1/8", "from: 10.0.0.1/8 has bits set past /8", true},
		{"a.test from 10.0.0.0/8 from 11.0.0.0/8", "from given twice in one rule", true},
		{"a.test to", "to needs a destination, HOST:PORT", true},
		{"a.test to b.test", `to: destination "b.test": want HOST:PORT`, true},
		{"a.test to b.test:1 c", `unexpected "c" after the destination`, true},
		{"a.test private 443", `unexpected "private": write private last`, true},
		{"a.test private private", `unexpected "private": write private last`, true},
		{"a.test to 10.0.0.1:443 private", "private has no effect with to", true},
	} {
		t.Run(tc.line, func(t *testing.T) {
			f := strings.Fields(tc.line)
			r, err := ParseRule(f[0], f[1:])
			switch {
			case tc.err && (err == nil || !strings.HasPrefix(err.Error(), tc.want)):
				t.Errorf("ParseRule = %v, want an error starting %q", err, tc.want)
			case !tc.err && err != nil:
				t.Errorf("ParseRule: %v", err)
			case !tc.err && r.String() != tc.want:
				t.Errorf("ParseRule = %q, want %q", r.String(), tc.want)
			}
		})
	}
}

// TestRuleKey: rules that say the same thing share a key wherever they were written; private
// makes another rule.
func TestRuleKey(t *testing.T) {
	parse := func(line string) Rule {
		f := strings.Fields(line)
		r, err := ParseRule(f[0], f[1:])
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	a, b := parse("a.test 8883 443 from 10.0.0.0/8 192.168.0.0/16"), parse("a.test 443 8883 from 192.168.0.0/16 10.0.0.0/8")
	b.Origin = "elsewhere:3"
	if a.Key() != b.Key() {
		t.Errorf("keys differ: %q, %q", a.Key(), b.Key())
	}
	if p := parse("a.test 443 8883 from 10.0.0.0/8 192.168.0.0/16 private"); p.Key() == a.Key() {
		t.Errorf("private does not change the key: %q", p.Key())
	}
}
