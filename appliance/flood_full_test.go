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

	"github.com/lnm-project/lnm/allowlist"
	"github.com/lnm-project/lnm/audit"
	"github.com/lnm-project/lnm/forwarder"
	"github.com/lnm-project/lnm/internal/testkit"
)

// TestCase10FullSize is the faults catalog's case 10 at the issue's size, with the box's
// default limits: one device keeps 5,000 silent connections going and twenty others 100
// each (2,000), every one re-dialled as soon as the box closes it. Both ends of each live
// in this process, so the flood is sized under its open-file limit. Meanwhile a stream
// spliced before the flood keeps flowing, a new honest device gets its TLS streams through,
// and DNS answers over UDP and TCP; the audit log summarizes the flood instead of holding a
// record per connection.
func TestCase10FullSize(t *testing.T) {
	if testing.Short() {
		t.Skip("opens thousands of connections")
	}
	testkit.NoLeaks(t)
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		t.Fatal(err)
	}
	// Client ends of the flood (7,000), the box's ends of what it holds (its pending table,
	// 1,024, plus connections being closed), and room for the rest.
	if rl.Cur < 7000+2*forwarder.DefaultMaxPending+2000 {
		t.Skipf("LOUD SKIP: RLIMIT_NOFILE %d is too low for 7,000 flooding connections and the box's ends", rl.Cur)
	}
	dnsPort, proxyPort := testkit.FreePort(t), testkit.FreePort(t)
	ca := testkit.NewCA(t)
	testkit.TLSEcho(t, fmt.Sprintf("127.0.0.2:%d", proxyPort), ca.Issue(t, "api.azure.test"))
	dir := t.TempDir()
	rt, closeBox := startUnderParent(t, dir, dnsPort, proxyPort)
	proxy := fmt.Sprintf("127.0.0.1:%d", proxyPort)
	established, err := echoesWithin("127.0.0.4", proxy, "api.azure.test", ca, 30*time.Second)
	if err != nil {
		t.Fatalf("before the flood: %v", err)
	}
	defer established.Close()

	stop := make(chan struct{})
	var wg sync.WaitGroup
	// The big source dials from eight goroutines of 625 slots each, so that its 5,000 come
	// as a burst (up to 8,000 dials a second), not one at a time.
	big := "127.0.0.10"
	var bigDials []*int64
	for range 8 {
		bigDials = append(bigDials, flood(big, proxy, 625, stop, &wg))
	}
	dials := map[string]*int64{}
	var small []string
	for i := 1; i <= 20; i++ {
		src := fmt.Sprintf("127.0.1.%d", i)
		small = append(small, src)
		dials[src] = flood(src, proxy, 100, stop, &wg)
	}
	stopped := false
	stopFlood := func() {
		if !stopped {
			stopped = true
			close(stop)
			wg.Wait()
		}
	}
	defer stopFlood()

	fwd := rt.fwds[0]
	// The flood is on once it has filled the pending table: connections were evicted.
	for deadline := time.Now().Add(30 * time.Second); fwd.Limited(forwarder.ReasonHelloEvicted) == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("after 30 s the flood had not filled the pending table")
		}
	}

	dnsServer := fmt.Sprintf("127.0.0.1:%d", dnsPort)
	q := new(dns.Msg).SetQuestion("api.azure.test.", dns.TypeA)
	const rounds = 10
	var slowest time.Duration
	for i := range rounds {
		begin := time.Now()
		c, err := echoesWithin("127.0.0.3", proxy, "api.azure.test", ca, 30*time.Second)
		if err != nil {
			t.Fatalf("honest device, stream %d during the flood: %v", i, err)
		}
		c.Close()
		slowest = max(slowest, time.Since(begin))
		if err := roundTripWithin(established, 30*time.Second); err != nil {
			t.Fatalf("the stream spliced before the flood, round %d: %v", i, err)
		}
		for _, network := range []string{"udp", "tcp"} {
			cl := dns.Client{Net: network, Timeout: 10 * time.Second,
				Dialer: &net.Dialer{LocalAddr: localAddr(network, "127.0.0.3")}}
			m, _, err := cl.Exchange(q, dnsServer)
			if err != nil || m.Rcode != dns.RcodeSuccess || len(m.Answer) != 1 {
				t.Fatalf("dns over %s during the flood, round %d: %v %v", network, i, m, err)
			}
		}
		time.Sleep(300 * time.Millisecond) // spreads the rounds over the flood, not synchronisation
	}
	limited := map[allowlist.Reason]uint64{}
	for _, r := range []allowlist.Reason{forwarder.ReasonHelloEvicted, forwarder.ReasonTooManyPending, forwarder.ReasonConnRateLimited, forwarder.ReasonHelloTimeout} {
		limited[r] = fwd.Limited(r)
	}
	stopFlood()
	if err := roundTripWithin(established, 30*time.Second); err != nil {
		t.Fatalf("the stream spliced before the flood, after it: %v", err)
	}
	established.Close()
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
	if opens != rounds {
		t.Errorf("%d open records of the honest device, want %d", opens, rounds)
	}
	var total uint64
	var totalDials int64
	records := 0
	var fromBig int64
	for _, n := range bigDials {
		fromBig += *n
	}
	dials[big] = &fromBig
	for _, src := range append([]string{big}, small...) {
		a := netip.MustParseAddr(src)
		records += denies[a]
		totalDials += *dials[src]
		total += summed[a]
	}
	// A few records per source and summary period (10 s): never one per connection.
	if limit := 10 * 21 * 4; records > limit {
		t.Errorf("%d deny records for the flood, want at most %d (ten per source and period)", records, limit)
	}
	if summed[netip.MustParseAddr(big)] == 0 {
		t.Errorf("%s: no conn_limited summary", big)
	}
	if total != unrecorded {
		t.Errorf("summaries count %d connections, the forwarder left %d unrecorded", total, unrecorded)
	}
	if int64(records)+int64(total) > totalDials {
		t.Errorf("%d records and %d summarized for %d dials", records, total, totalDials)
	}
	t.Logf("flood: %d dials from 21 sources (%d from %s); limits %v; %d deny records, %d summarized; slowest honest stream %v",
		totalDials, *dials[big], big, limited, records, total, slowest.Round(time.Millisecond))
}

// echoesWithin is echoes with a deadline for the loaded machine's sake: the flood and the
// other tests share two cores, and a test must not fail because its turn came late.
func echoesWithin(src, addr, sni string, ca *testkit.CA, d time.Duration) (*tls.Conn, error) {
	dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: d}
	c, err := tls.DialWithDialer(dialer, "tcp", addr, ca.Client(sni))
	if err != nil {
		return nil, err
	}
	if err := roundTripWithin(c, d); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// roundTripWithin is roundTrip with a deadline of d.
func roundTripWithin(c *tls.Conn, d time.Duration) error {
	c.SetDeadline(time.Now().Add(d))
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
