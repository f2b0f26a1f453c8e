package appliance

import (
	"crypto/tls"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/lnm-project/lnm/audit"
	"github.com/lnm-project/lnm/internal/testkit"
)

// TestCase22DNSWithoutTheProxyPath is the part of the faults catalog's case 22 the
// forwarder's tests cannot show: with the parent down, so that no connection can go up, the
// box still answers DNS over UDP and TCP for its allowed names (the resolver shares nothing
// with the proxy path), while each connection fails fast with upstream_parent_unreachable,
// recorded.
func TestCase22DNSWithoutTheProxyPath(t *testing.T) {
	testkit.NoLeaks(t)
	dnsPort, proxyPort := testkit.FreePort(t), testkit.FreePort(t)
	dir := t.TempDir()
	// The parent, 127.0.0.2 on the proxy's port, has nothing listening: every dial is refused.
	_, closeBox := startUnderParent(t, dir, dnsPort, proxyPort)
	ca := testkit.NewCA(t)
	proxy := fmt.Sprintf("127.0.0.1:%d", proxyPort)
	dnsServer := fmt.Sprintf("127.0.0.1:%d", dnsPort)
	q := new(dns.Msg).SetQuestion("api.azure.test.", dns.TypeA)
	const rounds = 5
	for i := range rounds {
		if c, err := tls.Dial("tcp", proxy, ca.Client("api.azure.test")); err == nil {
			c.Close()
			t.Fatalf("round %d: a handshake went through with the parent down", i)
		}
		for _, network := range []string{"udp", "tcp"} {
			cl := dns.Client{Net: network, Timeout: 5 * time.Second}
			m, _, err := cl.Exchange(q, dnsServer)
			if err != nil || m.Rcode != dns.RcodeSuccess || len(m.Answer) != 1 {
				t.Fatalf("round %d: DNS over %s with the proxy path down: %v %v", i, network, m, err)
			}
		}
	}
	if err := closeBox(); err != nil {
		t.Fatal(err)
	}
	denies, answered := 0, 0
	err := audit.Read(filepath.Join(dir, "audit"), audit.Filter{}, func(r *audit.Record) bool {
		switch {
		case r.Kind == audit.KindConn && r.Event == "deny" && r.Reason == "upstream_parent_unreachable":
			denies++
		case r.Kind == audit.KindDNS && r.Name == "api.azure.test" && r.Rcode == "NOERROR":
			answered++
		}
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	if denies != rounds || answered != 2*rounds {
		t.Errorf("%d upstream_parent_unreachable denies and %d answered queries recorded, want %d and %d", denies, answered, rounds, 2*rounds)
	}
}
