package appliance

import (
	"crypto/tls"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// TestCase42ReloadsUnderLoad is the faults catalog's case 42 at its size: 100 reloads over
// about five seconds, each a real change of the list (a rule added or removed), while 1,000
// streams stay spliced and DNS questions come at up to 500 a second over UDP and TCP. No
// question fails, every stream still flows both ways after the reloads (and at every tenth
// reload), each new rule answers as soon as its reload returns and a removed one stops, and
// each reload is one config record with the list's hash.
func TestCase42ReloadsUnderLoad(t *testing.T) {
	const reloads, splices = 100, 1000
	rules := func(extra int) string {
		// One test client opens all the streams: the per-device limits are off.
		r := "    conn_rate_limit off\n    max_conns_per_source off\n    allow {\n        *.azure.test\n"
		if extra >= 0 {
			r += fmt.Sprintf("        extra%d.contoso.test\n", extra)
		}
		return r + "    }"
	}
	b := startBox(t, "127.0.0.1", func(*box) string { return rules(-1) })
	streams := make([]*tls.Conn, splices)
	for i := range streams {
		streams[i] = b.stream(t, "api.azure.test")
	}

	var asked, failed atomic.Int64
	var lastErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	server := fmt.Sprintf("127.0.0.1:%d", b.dnsPort)
	for w := range 4 {
		wg.Go(func() {
			cl := dns.Client{Net: []string{"udp", "tcp"}[w%2], Timeout: 10 * time.Second}
			tick := time.NewTicker(8 * time.Millisecond) // 4 × 125 a second
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				asked.Add(1)
				m, _, err := cl.Exchange(new(dns.Msg).SetQuestion("api.azure.test.", dns.TypeA), server)
				if err != nil || m.Rcode != dns.RcodeSuccess || len(m.Answer) != 1 {
					failed.Add(1)
					lastErr.Store(fmt.Sprint(m, err))
				}
			}
		})
	}
	stopLoad := func() {
		select {
		case <-stop:
		default:
			close(stop)
			wg.Wait()
		}
	}
	defer stopLoad()

	began := time.Now()
	for i := range reloads {
		extra := -1
		if i%2 == 0 {
			extra = i
		}
		if err := b.rt.Reload(b.config(t, "127.0.0.1", rules(extra)), Caller{}); err != nil {
			t.Fatalf("reload %d: %v", i, err)
		}
		if extra >= 0 {
			if rcode, n := askWithin(t, server, fmt.Sprintf("extra%d.contoso.test.", extra)); rcode != dns.RcodeSuccess || n != 1 {
				t.Fatalf("reload %d: the rule it added is not answered yet: rcode %s", i, dns.RcodeToString[rcode])
			}
		} else if rcode, _ := askWithin(t, server, fmt.Sprintf("extra%d.contoso.test.", i-1)); rcode != dns.RcodeNameError {
			t.Fatalf("reload %d: the rule it removed still answers: rcode %s", i, dns.RcodeToString[rcode])
		}
		if i%10 == 9 {
			for j, c := range streams {
				flows(t, c, fmt.Sprintf("reload %d stream %d", i, j))
			}
		}
		time.Sleep(40 * time.Millisecond) // spreads the reloads over the DNS load, not synchronisation
	}
	took := time.Since(began)
	stopLoad()
	for j, c := range streams {
		flows(t, c, fmt.Sprintf("after stream %d", j))
	}
	if failed.Load() > 0 {
		t.Errorf("%d of %d questions failed during the reloads; last: %v", failed.Load(), asked.Load(), lastErr.Load())
	}
	recs := b.configRecords(t, reloads+1)
	n := 0
	for _, r := range recs {
		if strings.HasPrefix(r.Change, "reload ") && r.Hash != "" {
			n++
		}
	}
	if n != reloads {
		t.Errorf("%d reload records with a hash, want %d", n, reloads)
	}
	t.Logf("%d reloads in %v with %d streams spliced; %d questions, %d failed", reloads, took.Round(time.Millisecond), splices, asked.Load(), failed.Load())
}

// askWithin is box.ask with a timeout a loaded machine cannot reach.
func askWithin(t *testing.T, server, name string) (rcode, answers int) {
	t.Helper()
	cl := dns.Client{Timeout: 10 * time.Second}
	r, _, err := cl.Exchange(new(dns.Msg).SetQuestion(name, dns.TypeA), server)
	if err != nil {
		t.Fatalf("query %s: %v", name, err)
	}
	return r.Rcode, len(r.Answer)
}
