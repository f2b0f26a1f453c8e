package appliance

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/lnm-project/lnm/audit"
	"github.com/lnm-project/lnm/forwarder"
	"github.com/lnm-project/lnm/internal/testkit"
)

// flood keeps up to slots silent connections from src open to addr, opening a new one as
// soon as the box closes one (about a thousand a second at most), until stop.
func flood(src, addr string, slots int, stop <-chan struct{}, wg *sync.WaitGroup) *int64 {
	var dials int64
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: time.Second}
	free := make(chan struct{}, slots)
	for range slots {
		free <- struct{}{}
	}
	var mu sync.Mutex
	open := map[net.Conn]bool{}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				mu.Lock()
				for c := range open {
					c.Close()
				}
				mu.Unlock()
				return
			case <-free:
			}
			c, err := d.Dial("tcp", addr)
			dials++
			if err != nil {
				free <- struct{}{}
				time.Sleep(time.Millisecond)
				continue
			}
			mu.Lock()
			open[c] = true
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				c.Read(make([]byte, 1)) // until the box closes it, or stop does
				c.Close()
				mu.Lock()
				delete(open, c)
				mu.Unlock()
				free <- struct{}{}
			}()
			time.Sleep(time.Millisecond)
		}
	}()
	return &dials
}

// echoes opens a TLS stream from src through the box and checks one round trip on it.
func echoes(src, addr, sni string, ca *testkit.CA) (*tls.Conn, error) {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 3 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, ca.Client(sni))
	if err != nil {
		return nil, err
	}
	if err := roundTrip(c); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func roundTrip(c *tls.Conn) error {
	c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := io.WriteString(c, "ping"); err != nil {
		return err
	}
	buf := make([]byte, 64)
	n, err := c.Read(buf)
	if err != nil {
		return err
	}
	if !strings.HasSuffix(string(buf[:n]), "ping") {
		return fmt.Errorf("echo %q", buf[:n])
	}
	return nil
}

// TestCase10SilentFloodKeepsNewSourcesIn (faults catalog item 10): two devices flood the
// box with connections that never send a hello, thousands of them, enough to fill the
// pending table several times over. Meanwhile a stream spliced before the flood keeps
// flowing, a new honest device from a third address gets its TLS streams through (the
// flood's oldest waiting connections make room), and DNS keeps answering over UDP and TCP.
// The audit log holds a few deny records per flooding device and one conn_limited summary
// each, not a record per connection; the metrics count what the limits closed.
func TestCase10SilentFloodKeepsNewSourcesIn(t *testing.T) {
	testkit.NoLeaks(t)
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		t.Fatal(err)
	}
	// Each silent connection takes a descriptor at each end; stay well under the limit.
	slots := min(200, int(rl.Cur-300)/6)
	dnsPort, proxyPort := testkit.FreePort(t), testkit.FreePort(t)
	ca := testkit.NewCA(t)
	// The parent is the echo server on 127.0.0.2, same port as the box's proxy on 127.0.0.1.
	testkit.TLSEcho(t, fmt.Sprintf("127.0.0.2:%d", proxyPort), ca.Issue(t, "api.azure.test"))
	dir := t.TempDir()
	rt, closeBox := startUnderParent(t, dir, dnsPort, proxyPort, "max_pending 100")
	proxy := fmt.Sprintf("127.0.0.1:%d", proxyPort)
	established, err := echoes("127.0.0.4", proxy, "api.azure.test", ca)
	if err != nil {
		t.Fatalf("before the flood: %v", err)
	}
	defer established.Close()

	stop := make(chan struct{})
	var wg sync.WaitGroup
	floodA := flood("127.0.0.10", proxy, slots, stop, &wg)
	floodB := flood("127.0.0.11", proxy, slots, stop, &wg)
	stopped := false
	stopFlood := func() {
		if !stopped {
			stopped = true
			close(stop)
			wg.Wait()
		}
	}
	defer stopFlood()
	time.Sleep(500 * time.Millisecond) // the table fills within the rate's burst

	dnsServer := fmt.Sprintf("127.0.0.1:%d", dnsPort)
	q := new(dns.Msg).SetQuestion("api.azure.test.", dns.TypeA)
	for i := range 5 {
		begin := time.Now()
		c, err := echoes("127.0.0.3", proxy, "api.azure.test", ca)
		if err != nil {
			t.Fatalf("honest device, stream %d during the flood: %v", i, err)
		}
		c.Close()
		if took := time.Since(begin); took > 2*time.Second {
			t.Errorf("honest device, stream %d took %v", i, took)
		}
		if err := roundTrip(established); err != nil {
			t.Fatalf("the stream spliced before the flood: %v", err)
		}
		for _, network := range []string{"udp", "tcp"} {
			cl := dns.Client{Net: network, Timeout: 2 * time.Second,
				Dialer: &net.Dialer{LocalAddr: localAddr(network, "127.0.0.3")}}
			m, _, err := cl.Exchange(q, dnsServer)
			if err != nil || m.Rcode != dns.RcodeSuccess || len(m.Answer) != 1 {
				t.Fatalf("dns over %s during the flood: %v %v", network, m, err)
			}
		}
		time.Sleep(300 * time.Millisecond)
	}
	fwd := rt.fwds[0]
	evicted, pendingFull := fwd.Limited(forwarder.ReasonHelloEvicted), fwd.Limited(forwarder.ReasonTooManyPending)
	stopFlood()
	if err := roundTrip(established); err != nil {
		t.Fatalf("the stream spliced before the flood, after it: %v", err)
	}
	established.Close()
	if evicted == 0 || pendingFull == 0 {
		t.Fatalf("%d evicted, %d refused too_many_pending: the flood never filled the table", evicted, pendingFull)
	}
	if err := closeBox(); err != nil {
		t.Fatal(err)
	}
	unrecorded := fwd.Unrecorded()

	denies := map[netip.Addr]int{}
	summed := map[netip.Addr]uint64{}
	opens := 0
	err = audit.Read(filepath.Join(dir, "audit"), audit.Filter{}, func(r *audit.Record) bool {
		switch {
		case r.Kind == audit.KindConn && r.Event == "deny":
			denies[r.Client.Addr()]++
		case r.Kind == audit.KindConn && r.Event == "open" && r.Client.Addr() == netip.MustParseAddr("127.0.0.3"):
			opens++
		case r.Kind == audit.KindSummary && r.Reason == ReasonConnLimited:
			summed[r.Client.Addr()] += r.Count
		}
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	if opens != 5 {
		t.Errorf("%d open records of the honest device, want 5", opens)
	}
	var total uint64
	for _, src := range []string{"127.0.0.10", "127.0.0.11"} {
		a := netip.MustParseAddr(src)
		// One or two summary periods passed (a 10 s ticker), ten records each at most.
		if denies[a] == 0 || denies[a] > 20 {
			t.Errorf("%s: %d deny records, want a few (at most 10 a period)", src, denies[a])
		}
		if summed[a] == 0 {
			t.Errorf("%s: no conn_limited summary", src)
		}
		total += summed[a]
	}
	if total != unrecorded {
		t.Errorf("summaries count %d connections, the forwarder left %d unrecorded", total, unrecorded)
	}
	t.Logf("flood: %d and %d dials, %d evicted, %d refused too_many_pending, %d summarized, deny records %v",
		*floodA, *floodB, evicted, pendingFull, total, denies)
}

func localAddr(network, ip string) net.Addr {
	if network == "udp" {
		return &net.UDPAddr{IP: net.ParseIP(ip)}
	}
	return &net.TCPAddr{IP: net.ParseIP(ip)}
}
