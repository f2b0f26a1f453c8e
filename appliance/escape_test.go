package appliance

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/lnm-project/lnm/internal/testkit"
)

// TestEncryptedDNSEscapes is the faults catalog's case 45: a device's encrypted-DNS escape
// hatches lead nowhere. Firefox's canary gets a negative answer (so Firefox keeps using the
// box), DDR's SVCB question no designated resolver, DoH servers' SNIs are denied like any
// name not on the list, nothing listens on 853 (DoT), and a proxy port takes no UDP (QUIC),
// so browsers fall back to TCP and a ClientHello the box can read.
func TestEncryptedDNSEscapes(t *testing.T) {
	dnsPort, proxyPort := testkit.FreePort(t), testkit.FreePort(t)
	rt, err := Start(loopbackConfig(t, dnsPort, proxyPort), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	server := fmt.Sprintf("127.0.0.1:%d", dnsPort)
	for _, tc := range []struct {
		name  string
		qtype uint16
	}{
		{"use-application-dns.net.", dns.TypeA},
		{"use-application-dns.net.", dns.TypeAAAA},
		{"_dns.resolver.arpa.", dns.TypeSVCB},
		{"dns.google.", dns.TypeHTTPS},
	} {
		t.Run(tc.name+dns.TypeToString[tc.qtype], func(t *testing.T) {
			r, _, err := new(dns.Client).Exchange(new(dns.Msg).SetQuestion(tc.name, tc.qtype), server)
			if err != nil {
				t.Fatal(err)
			}
			if len(r.Answer) != 0 || (r.Rcode != dns.RcodeNameError && r.Rcode != dns.RcodeRefused && r.Rcode != dns.RcodeSuccess) {
				t.Errorf("%s %s: %s with %d answers, want a negative answer", tc.name, dns.TypeToString[tc.qtype], dns.RcodeToString[r.Rcode], len(r.Answer))
			}
		})
	}
	for _, sni := range []string{"dns.google", "cloudflare-dns.com", "mozilla.cloudflare-dns.com"} {
		t.Run("DoH "+sni, func(t *testing.T) {
			c, err := tls.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", proxyPort), &tls.Config{ServerName: sni, NextProtos: []string{"h2"}})
			if err == nil {
				c.Close()
				t.Fatal("the handshake went through")
			}
			if !strings.Contains(err.Error(), "access denied") {
				t.Errorf("%v, want the TLS alert access_denied", err)
			}
		})
	}
	t.Run("DoT 853", func(t *testing.T) {
		if c, err := net.DialTimeout("tcp", "127.0.0.1:853", 2*time.Second); err == nil {
			c.Close()
			t.Skip("LOUD SKIP: something else on this machine listens on 127.0.0.1:853; the box does not")
		} else if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("dial 853: %v, want connection refused", err)
		}
	})
	t.Run("QUIC on the proxy port", func(t *testing.T) {
		c, err := net.Dial("udp", fmt.Sprintf("127.0.0.1:%d", proxyPort))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Write(make([]byte, 1200)) // an Initial's size; the kernel answers port unreachable
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Read(make([]byte, 64)); !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("UDP to the proxy port: %v, want port unreachable (nothing listens)", err)
		}
	})
}
