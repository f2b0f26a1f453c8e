package appliance

import (
	"strings"
	"testing"

	"github.com/lnm-project/lnm/allowlist"
	"github.com/lnm-project/lnm/config"
)

// TestDecideConnectPorts: with a connect port, `lnm allow test` decides any port a CONNECT
// may name (the rule's ports are the CONNECT's), except a tcp route's, which the route takes.
func TestDecideConnectPorts(t *testing.T) {
	parse := func(t *testing.T, extra string) *config.Config {
		c, err := config.Parse("lnm.conf", strings.NewReader("lnm {\n    listen 127.0.0.1\n    proxy 443\n"+extra+
			"    tcp 1883 198.18.4.30:1883\n    allow {\n        mqtt.vendor.test 8883\n    }\n}\n"))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	for _, tc := range []struct {
		name    string
		extra   string
		port    uint16
		allowed bool
		noProxy bool
		route   bool
	}{
		{"no connect port", "", 8883, false, true, false},
		{"connect port", "    connect 3128\n", 8883, true, false, false},
		{"connect port, another port", "    connect 3128\n", 443, false, false, false},
		{"connect port, a route's port", "    connect 3128\n", 1883, true, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, err := Decide(parse(t, tc.extra), allowlist.Query{Name: "mqtt.vendor.test", Port: tc.port})
			if err != nil {
				t.Fatal(err)
			}
			if a.Allowed != tc.allowed || a.NoProxy != tc.noProxy || (a.Route != nil) != tc.route {
				t.Fatalf("answer %+v", a)
			}
		})
	}
}
