package appliance

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/lnm-project/lnm/audit"
	"github.com/lnm-project/lnm/config"
	"github.com/lnm-project/lnm/forwarder"
	"github.com/lnm-project/lnm/internal/testkit"
	"github.com/lnm-project/lnm/resolver"
)

// TestMain fails the package when any test leaves a goroutine running: a runtime that
// Close did not fully stop.
func TestMain(m *testing.M) { testkit.Main(m) }

func loopbackConfig(t *testing.T, dnsPort, proxyPort uint16) *config.Config {
	t.Helper()
	dir := t.TempDir()
	text := fmt.Sprintf(`lnm {
    listen 127.0.0.1
    dns    %d
    proxy  %d
    parent 127.0.0.2
    admin  %s/admin.sock
    audit  %s/audit
    allow {
        *.azure.test
    }
}
`, dnsPort, proxyPort, dir, dir)
	cfg, err := config.Parse("runtime.conf", strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestRuntimeServesAndStops(t *testing.T) {
	dnsPort, proxyPort := testkit.FreePort(t), testkit.FreePort(t)
	rt, err := Start(loopbackConfig(t, dnsPort, proxyPort), nil)
	if err != nil {
		t.Fatal(err)
	}
	server := fmt.Sprintf("127.0.0.1:%d", dnsPort)
	for _, network := range []string{"udp", "tcp"} {
		c := &dns.Client{Net: network}
		m := new(dns.Msg).SetQuestion("api.azure.test.", dns.TypeA)
		r, _, err := c.Exchange(m, server)
		if err != nil {
			t.Fatalf("%s: %v", network, err)
		}
		if len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != "127.0.0.1" {
			t.Fatalf("%s: answer %v, want the listen address", network, r.Answer)
		}
	}
	if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", proxyPort)); err != nil {
		t.Fatalf("proxy port not listening: %v", err)
	} else {
		c.Close()
	}
	if err := rt.Close(); err != nil {
		t.Fatal(err)
	}
	rt.Close() // idempotent
	if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", proxyPort)); err == nil {
		c.Close()
		t.Fatal("proxy port still open after Close")
	}
}

func TestRuntimeStartFailureLeavesNothingBound(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	dnsPort := testkit.FreePort(t)
	_, err = Start(loopbackConfig(t, dnsPort, uint16(busy.Addr().(*net.TCPAddr).Port)), nil)
	if err == nil || !strings.Contains(err.Error(), busy.Addr().String()) {
		t.Fatalf("Start with a busy proxy port: %v, want an error naming %s", err, busy.Addr())
	}
	// The DNS port it had bound before failing must be free again.
	ln, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", dnsPort))
	if err != nil {
		t.Fatalf("DNS port still bound after a failed start: %v", err)
	}
	ln.Close()
}

// TestRuntimeReloadDenyRefused: `deny` is reloadable; a name off the list is answered
// NXDOMAIN, then REFUSED after a reload to `deny refused`, and both are audited as denials
// with the rcode sent.
func TestRuntimeReloadDenyRefused(t *testing.T) {
	dnsPort, proxyPort := testkit.FreePort(t), testkit.FreePort(t)
	cfg := loopbackConfig(t, dnsPort, proxyPort)
	rt, err := Start(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	rcode := func() int {
		t.Helper()
		r, err := dns.Exchange(new(dns.Msg).SetQuestion("evil.test.", dns.TypeA), fmt.Sprintf("127.0.0.1:%d", dnsPort))
		if err != nil {
			t.Fatal(err)
		}
		return r.Rcode
	}
	if got := rcode(); got != dns.RcodeNameError {
		t.Fatalf("before the reload: %s, want NXDOMAIN", dns.RcodeToString[got])
	}
	next := *cfg
	next.DenyRefused = true
	if err := rt.Reload(&next, Caller{}); err != nil {
		t.Fatalf("reload: %v", err)
	}
	if got := rcode(); got != dns.RcodeRefused {
		t.Fatalf("after the reload: %s, want REFUSED", dns.RcodeToString[got])
	}
	if err := rt.Close(); err != nil {
		t.Fatal(err)
	}
	var got []string
	err = audit.Read(cfg.AuditDir, audit.Filter{Kind: audit.KindDNS}, func(r *audit.Record) bool {
		got = append(got, r.Verdict+" "+r.Reason+" "+r.Rcode)
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"deny not_listed NXDOMAIN", "deny not_listed REFUSED"}; !slices.Equal(got, want) {
		t.Errorf("dns records %q, want %q", got, want)
	}
}

// TestRuntimeMaxPending: `max_pending` reaches the forwarder: with one slot, of two silent
// connections one waits for its hello and the other is closed at once. Which one is the
// forwarder's scheduling; exactly one of each is the cap.
func TestRuntimeMaxPending(t *testing.T) {
	dnsPort, proxyPort := testkit.FreePort(t), testkit.FreePort(t)
	cfg := loopbackConfig(t, dnsPort, proxyPort)
	cfg.MaxPending = 1
	rt, err := Start(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	addr := fmt.Sprintf("127.0.0.1:%d", proxyPort)
	var held, closed int
	var conns []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", addr)
		if errors.Is(err, syscall.ECONNRESET) { // refused so fast that connect saw the reset
			closed++
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns = append(conns, c)
	}
	// Both are open before either is read: a full table shortens the hello deadline to a
	// second, so the held one is closed a second after its accept.
	for _, c := range conns {
		c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		_, err := c.Read(make([]byte, 1))
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded):
			held++
		case err == io.EOF || errors.Is(err, syscall.ECONNRESET):
			closed++
		default:
			t.Fatalf("read: %v", err)
		}
	}
	if held != 1 || closed != 1 {
		t.Fatalf("max_pending 1: %d connections held, %d closed; want one of each", held, closed)
	}
}

// TestChildFactorsAgree: the README promises one factor for a child box's limits, DNS and
// connections alike.
func TestChildFactorsAgree(t *testing.T) {
	if forwarder.DefaultChildFactor != resolver.DefaultChildFactor {
		t.Errorf("a child gets %dx the connection limits but %dx the DNS TCP one", forwarder.DefaultChildFactor, resolver.DefaultChildFactor)
	}
}

// TestPlanLimits: the limit directives reach the forwarder and the resolver, `off` as no
// limit (negative) and an absent directive as its default, with the children beside them.
func TestPlanLimits(t *testing.T) {
	for _, tc := range []struct {
		name                        string
		lines                       string
		conns, perSrc, rate, dnsTCP int
	}{
		{"defaults", "", forwarder.DefaultMaxConns, forwarder.DefaultMaxConnsPerSrc, forwarder.DefaultConnRate, resolver.DefaultMaxTCPPerSource},
		{"set", "max_conns 9\nmax_conns_per_source 8\nconn_rate_limit 7\ndns_tcp_per_source 6", 9, 8, 7, 6},
		{"off", "max_conns off\nmax_conns_per_source off\nconn_rate_limit off\ndns_tcp_per_source off", -1, -1, -1, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			text := "lnm {\nlisten 127.0.0.1\nproxy 443\nparent 127.0.0.2\nchildren 127.0.0.8/29\n" + tc.lines + "\n}\n"
			cfg, err := config.Parse("lnm.conf", strings.NewReader(text))
			if err != nil {
				t.Fatal(err)
			}
			rt := &Runtime{trail: &trail{}}
			pl, err := rt.plan(cfg, false, nil)
			if err != nil {
				t.Fatal(err)
			}
			f, d := pl.fwds[0], pl.dns[0]
			if f.MaxConns != tc.conns || f.MaxConnsPerSrc != tc.perSrc || f.ConnRate != tc.rate || d.MaxTCPPerSource != tc.dnsTCP {
				t.Errorf("forwarder %d/%d/%d, resolver %d; want %d/%d/%d, %d", f.MaxConns, f.MaxConnsPerSrc, f.ConnRate, d.MaxTCPPerSource, tc.conns, tc.perSrc, tc.rate, tc.dnsTCP)
			}
			if len(f.Children) != 1 || len(d.Children) != 1 || f.OnLimited == nil {
				t.Errorf("children %v and %v, OnLimited set %v", f.Children, d.Children, f.OnLimited != nil)
			}
		})
	}
}

// startUnderParent starts a box on 127.0.0.1 (DNS on dnsPort, proxy on proxyPort) whose parent
// is 127.0.0.2 on the proxy's port, allowing api.azure.test, with admin off, its audit log in
// dir/audit and the extra directives (one line each). closeBox closes it and returns Close's
// error; the test's cleanup closes it if the test did not.
func startUnderParent(t *testing.T, dir string, dnsPort, proxyPort uint16, extra ...string) (rt *Runtime, closeBox func() error) {
	t.Helper()
	var more strings.Builder
	for _, d := range extra {
		more.WriteString("    " + d + "\n")
	}
	text := fmt.Sprintf(`lnm {
    listen  127.0.0.1
    dns     %d
    proxy   %d
    parent  127.0.0.2
    admin   off
    audit   %s/audit
%s    allow {
        api.azure.test
    }
}
`, dnsPort, proxyPort, dir, more.String())
	cfg, err := config.Parse(filepath.Join(dir, "lnm.conf"), strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	rt, err = Start(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			rt.Close()
		}
	})
	return rt, func() error {
		closed = true
		return rt.Close()
	}
}
