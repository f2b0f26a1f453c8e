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
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/lnm-project/lnm/audit"
	"github.com/lnm-project/lnm/internal/testkit"
)

// TestCase37MixedLoadCompleteness is the faults catalog's case 37: DNS questions (allowed
// and denied, over UDP and TCP) and connections (spliced, denied by name, not TLS, silent,
// half a hello then FIN, and a burst of silent ones past the per-period record budget) all
// at once, each kind counted by its client. The audit log then holds exactly one record per
// decision, each connection's open matched by its close, the suppressed burst counted in
// summaries, and sequence numbers with no gaps.
func TestCase37MixedLoadCompleteness(t *testing.T) {
	testkit.NoLeaks(t)
	dnsPort, proxyPort := testkit.FreePort(t), testkit.FreePort(t)
	ca := testkit.NewCA(t)
	testkit.TLSEcho(t, fmt.Sprintf("127.0.0.2:%d", proxyPort), ca.Issue(t, "api.azure.test"))
	dir := t.TempDir()
	_, closeBox := startUnderParent(t, dir, dnsPort, proxyPort, "hello_timeout 1s", "dns_rate_limit off")
	proxy := fmt.Sprintf("127.0.0.1:%d", proxyPort)
	dnsServer := fmt.Sprintf("127.0.0.1:%d", dnsPort)

	const (
		dnsAllowed, dnsDenied = 200, 100
		spliced, denied       = 30, 20
		notTLS, silent, half  = 10, 5, 5
		burst                 = 25 // silent, from one source: ten recorded, the rest summarized
	)
	var failures atomic.Int64
	fail := func(format string, args ...any) {
		failures.Add(1)
		t.Errorf(format, args...)
	}
	dialFrom := func(src string) (net.Conn, error) {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 10 * time.Second}
		return d.Dial("tcp", proxy)
	}
	var wg sync.WaitGroup
	// DNS: eight workers, alternating UDP and TCP.
	work := make(chan string, dnsAllowed+dnsDenied)
	for i := range dnsAllowed {
		work <- fmt.Sprintf("api.azure.test.|%d", i)
	}
	for i := range dnsDenied {
		work <- fmt.Sprintf("n%d.blocked.test.|%d", i, i)
	}
	close(work)
	for w := range 8 {
		wg.Go(func() {
			network := []string{"udp", "tcp"}[w%2]
			cl := dns.Client{Net: network, Timeout: 10 * time.Second}
			for item := range work {
				name, _, _ := strings.Cut(item, "|")
				m, _, err := cl.Exchange(new(dns.Msg).SetQuestion(name, dns.TypeA), dnsServer)
				want := dns.RcodeSuccess
				if strings.HasSuffix(name, "blocked.test.") {
					want = dns.RcodeNameError
				}
				if err != nil || m.Rcode != want {
					fail("%s over %s: %v %v", name, network, m, err)
				}
			}
		})
	}
	for range spliced {
		wg.Go(func() {
			c, err := echoesWithin("127.0.0.1", proxy, "api.azure.test", ca, 30*time.Second)
			if err != nil {
				fail("spliced stream: %v", err)
				return
			}
			c.Close()
		})
	}
	for i := range denied {
		wg.Go(func() {
			c, err := tls.DialWithDialer(&net.Dialer{Timeout: 30 * time.Second}, "tcp", proxy, ca.Client(fmt.Sprintf("n%d.blocked.test", i)))
			if err == nil {
				c.Close()
				fail("an unlisted name got through")
			}
		})
	}
	for range notTLS {
		wg.Go(func() {
			c, err := dialFrom("127.0.0.1")
			if err != nil {
				fail("dial: %v", err)
				return
			}
			defer c.Close()
			io.WriteString(c, "GET / HTTP/1.1\r\nHost: api.azure.test\r\n\r\n")
			c.SetReadDeadline(time.Now().Add(30 * time.Second))
			io.Copy(io.Discard, c) // until the box closes it
		})
	}
	silentFrom := func(src string) {
		c, err := dialFrom(src)
		if err != nil {
			fail("dial from %s: %v", src, err)
			return
		}
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(30 * time.Second))
		io.Copy(io.Discard, c) // until the hello timeout closes it
	}
	for range silent {
		wg.Go(func() { silentFrom("127.0.0.20") })
	}
	for range burst {
		wg.Go(func() { silentFrom("127.0.0.22") })
	}
	hello := rawHelloBytes(t, "api.azure.test")
	for range half {
		wg.Go(func() {
			c, err := dialFrom("127.0.0.21")
			if err != nil {
				fail("dial: %v", err)
				return
			}
			defer c.Close()
			c.Write(hello[:len(hello)/2])
			c.(*net.TCPConn).CloseWrite()
			c.SetReadDeadline(time.Now().Add(30 * time.Second))
			io.Copy(io.Discard, c)
		})
	}
	wg.Wait()
	if failures.Load() > 0 {
		t.FailNow()
	}
	if err := closeBox(); err != nil {
		t.Fatal(err)
	}

	var (
		prev                    uint64
		gaps                    []string
		rcodes                  = map[string]int{}
		conn                    = map[string]int{}
		opens, closes           = map[uint64]bool{}, map[uint64]bool{}
		summarized              = map[netip.Addr]uint64{}
		burstSrc                = netip.MustParseAddr("127.0.0.22")
		burstDenies, otherKinds int
		spliceCloseReasonsWrong int
	)
	err := audit.Read(filepath.Join(dir, "audit"), audit.Filter{}, func(r *audit.Record) bool {
		if prev != 0 && r.Seq != prev+1 {
			gaps = append(gaps, fmt.Sprintf("%d→%d", prev, r.Seq))
		}
		prev = r.Seq
		switch r.Kind {
		case audit.KindDNS:
			rcodes[r.Rcode]++
		case audit.KindConn:
			switch r.Event {
			case "open":
				opens[r.ID] = true
			case "close":
				closes[r.ID] = true
				if r.Reason != "eof" && r.Reason != "shutdown" {
					spliceCloseReasonsWrong++
				}
			case "deny":
				if r.Client.Addr() == burstSrc {
					burstDenies++
				}
				conn[r.Reason]++
			}
		case audit.KindSummary:
			summarized[r.Client.Addr()] += r.Count
		default:
			otherKinds++
		}
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(gaps) > 0 {
		t.Errorf("sequence gaps: %v", gaps)
	}
	if rcodes["NOERROR"] != dnsAllowed || rcodes["NXDOMAIN"] != dnsDenied || len(rcodes) != 2 {
		t.Errorf("dns records by rcode %v, want %d NOERROR and %d NXDOMAIN", rcodes, dnsAllowed, dnsDenied)
	}
	if len(opens) != spliced || len(closes) != spliced {
		t.Errorf("%d open and %d close records, want %d each", len(opens), len(closes), spliced)
	}
	for id := range opens {
		if !closes[id] {
			t.Errorf("stream %d opened and never closed in the log", id)
		}
	}
	if spliceCloseReasonsWrong > 0 {
		t.Errorf("%d streams closed for a reason other than eof or shutdown", spliceCloseReasonsWrong)
	}
	want := map[string]int{
		"not_listed":          denied,
		"not_tls":             notTLS,
		"clienthello_timeout": silent + burstDenies,
		"client_closed":       half,
	}
	for reason, n := range want {
		if conn[reason] != n {
			t.Errorf("%d deny records %s, want %d (all: %v)", conn[reason], reason, n, conn)
		}
	}
	if burstDenies == 0 || burstDenies > 20 || // ten a summary period; the burst may straddle two
		uint64(burstDenies)+summarized[burstSrc] != burst {
		t.Errorf("burst of %d silent connections: %d deny records and %d summarized, want a few records and the rest summarized",
			burst, burstDenies, summarized[burstSrc])
	}
	t.Logf("%d records with no gap: dns %v, denies %v, %d streams, burst %d recorded + %d summarized",
		prev, rcodes, conn, len(opens), burstDenies, summarized[burstSrc])
}

// rawHelloBytes records the bytes a Go TLS client sends first.
func rawHelloBytes(t *testing.T, sni string) []byte {
	t.Helper()
	a, b := net.Pipe()
	go func() {
		tls.Client(a, &tls.Config{ServerName: sni}).Handshake()
		a.Close()
	}()
	defer b.Close()
	buf := make([]byte, 16384)
	b.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := b.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	return buf[:n]
}
