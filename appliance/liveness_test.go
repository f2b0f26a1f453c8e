package appliance

import (
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/lnm-project/lnm/internal/testkit"
)

// TestStalledIdleAndBusy: a live box, idle or answering, is never reported stalled, and
// checking writes no audit record (the watchdog runs it every few seconds for ever).
func TestStalledIdleAndBusy(t *testing.T) {
	dnsPort, proxyPort := testkit.FreePort(t), testkit.FreePort(t)
	rt, err := Start(loopbackConfig(t, dnsPort, proxyPort), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	seq := rt.trail.seq.Load()
	for i := range 3 {
		if err := rt.Stalled(); err != nil {
			t.Fatalf("idle check %d: %v", i, err)
		}
	}
	if got := rt.trail.seq.Load(); got != seq {
		t.Errorf("checks wrote %d records", got-seq)
	}
	c := &dns.Client{Net: "udp", Timeout: 2 * time.Second}
	for range 5 {
		m := new(dns.Msg).SetQuestion("api.azure.test.", dns.TypeA)
		if _, _, err := c.Exchange(m, fmt.Sprintf("127.0.0.1:%d", dnsPort)); err != nil {
			t.Fatal(err)
		}
		conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", proxyPort))
		if err != nil {
			t.Fatal(err)
		}
		conn.Close()
		// A box that keeps up takes each connection before the next check; checks run
		// seconds apart under the watchdog, microseconds apart here, so wait for the take.
		deadline := time.Now().Add(10 * time.Second)
		for rt.fwds[0].Progress().Backlog > 0 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		if err := rt.Stalled(); err != nil {
			t.Errorf("busy: %v", err)
		}
	}
}

func TestSummary(t *testing.T) {
	rt, err := Start(loopbackConfig(t, testkit.FreePort(t), testkit.FreePort(t)), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	// dns, the proxy port and the admin socket
	if got, want := rt.Summary(), "level 0, 1 rule, 3 listeners, enforce"; got != want {
		t.Errorf("Summary = %q, want %q", got, want)
	}
	if err := rt.SetLearn(true, Caller{}); err != nil {
		t.Fatal(err)
	}
	if got, want := rt.Summary(), "level 0, 1 rule, 3 listeners, learn"; got != want {
		t.Errorf("Summary = %q, want %q", got, want)
	}
}
