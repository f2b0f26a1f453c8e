package appliance

import (
	"context"
	"errors"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/lnm-project/lnm/allowlist"
	"github.com/lnm-project/lnm/audit"
	"github.com/lnm-project/lnm/resolver"
	"github.com/lnm-project/lnm/store"
)

// benchTrail is the trail as Start builds it: a store with its writer running and an audit
// log in a temporary directory with the default fsync (group commit every 100ms).
func benchTrail(b *testing.B) *trail {
	b.Helper()
	st, err := store.New(store.Config{})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); st.Run(ctx) }()
	log, err := audit.Open(audit.Config{Dir: b.TempDir(), Box: "bench", Level: 3})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		cancel()
		<-done
		if err := log.Close(); err != nil {
			b.Error(err)
		}
	})
	return &trail{box: "bench", level: 3, log: log, store: st, metrics: newBoxMetrics(time.Now())}
}

// cpuTime is the CPU time the process has used, user and system: the client, the server
// and the audit trail's goroutines together. Per query, it shows what auditing costs
// where the throughput figure is muddied by the client sharing the CPUs.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func benchList(b *testing.B, names ...string) *allowlist.List {
	b.Helper()
	var rules []allowlist.Rule
	for _, n := range names {
		p, err := allowlist.ParsePattern(n)
		if err != nil {
			b.Fatal(err)
		}
		rules = append(rules, allowlist.Rule{Pattern: p, Origin: "bench:1"})
	}
	l, err := allowlist.New(rules)
	if err != nil {
		b.Fatal(err)
	}
	return l
}

// BenchmarkDNSAudit is the DNS answer path with auditing off and on: a resolver on loopback
// answering A questions for an allowed name from dnsInFlight clients, each with one query in
// flight on its own UDP socket, so the server always has work. "on" records every answer
// through the trail (link, log, store) as a running box does.
//
// The target is that auditing costs under 20% of DNS throughput: "on" at least 80% of
// "off" in queries/s. Client and server share the two CPUs and a run varies by ±10% with
// the machine; runs late in one process also drift down (the heap of earlier runs carries
// over). So compare medians of runs in fresh processes, off and on alternating:
//
//	go test -c -o /tmp/app.test ./appliance && cd appliance && for i in $(seq 12); do
//	  /tmp/app.test -test.run '^$' -test.bench DNSAudit/off -test.benchtime 300000x
//	  /tmp/app.test -test.run '^$' -test.bench DNSAudit/on -test.benchtime 300000x
//	done | benchstat -
func BenchmarkDNSAudit(b *testing.B) {
	const dnsInFlight = 8
	for _, bc := range []struct {
		name    string
		audited bool
	}{{"off", false}, {"on", true}} {
		b.Run(bc.name, func(b *testing.B) {
			cfg := resolver.Config{
				Addr: netip.MustParseAddrPort("127.0.0.1:0"),
				List: benchList(b, "api.example.com"),
			}
			var t *trail
			if bc.audited {
				t = benchTrail(b)
				cfg.OnQuery, cfg.Flush = t.onQuery, t.flush
			}
			srv, err := resolver.New(cfg)
			if err != nil {
				b.Fatal(err)
			}
			if err := srv.Start(); err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { srv.Close() })
			addr := srv.Addr().String()

			conns := make([]*dns.Conn, dnsInFlight)
			for i := range conns {
				if conns[i], err = dns.Dial("udp", addr); err != nil {
					b.Fatal(err)
				}
				defer conns[i].Close()
			}
			var left atomic.Int64
			left.Store(int64(b.N))
			cpu0 := cpuTime(b)
			b.ResetTimer()
			var wg sync.WaitGroup
			for _, c := range conns {
				wg.Go(func() {
					req := new(dns.Msg).SetQuestion("api.example.com.", dns.TypeA)
					for left.Add(-1) >= 0 {
						c.SetDeadline(time.Now().Add(5 * time.Second))
						if err := c.WriteMsg(req); err != nil {
							b.Error(err)
							return
						}
						m, err := c.ReadMsg()
						if err != nil {
							b.Error(err)
							return
						}
						if m.Rcode != dns.RcodeSuccess || len(m.Answer) != 1 {
							if t != nil {
								b.Errorf("reply %s; audit log %+v", dns.RcodeToString[m.Rcode], t.log.Stats())
							} else {
								b.Errorf("reply %v", m)
							}
							return
						}
					}
				})
			}
			wg.Wait()
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "queries/s")
			b.ReportMetric(float64((cpuTime(b)-cpu0).Microseconds())/float64(b.N), "cpu-µs/query")
			if t != nil {
				st := t.store.Stats()
				b.ReportMetric(float64(st.Dropped)/float64(b.N), "store-dropped/op")
				b.ReportMetric(float64(t.log.Stats().RefusedFull)/float64(b.N), "audit-refused/op")
			}
		})
	}
}

// BenchmarkTrailRecord is the records per second the store and the audit log sustain
// together with the default fsync: dns records through trail.record from several
// goroutines, timed until the last is on disk and in the store. Producers wait while the
// log refuses records (its queue is full) or the store's queue is half full, so the figure
// is what the two writers keep up with, not what their queues absorb.
func BenchmarkTrailRecord(b *testing.B) {
	t := benchTrail(b)
	client := netip.MustParseAddr("10.3.0.7")
	var waits atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			for t.store.Stats().Queued > store.DefaultQueue/2 {
				waits.Add(1)
				time.Sleep(100 * time.Microsecond)
			}
			for {
				r := &audit.Record{
					Kind: audit.KindDNS, Client: netip.AddrPortFrom(client, 0), Name: "api.example.com",
					QType: "A", Verdict: audit.VerdictAllow, Rule: "api.example.com (bench:1)", Rcode: "NOERROR",
					Answer: []netip.Addr{netip.MustParseAddr("10.3.0.1")},
				}
				err := t.record(r)
				if err == nil {
					break
				}
				if !errors.Is(err, audit.ErrQueueFull) {
					b.Error(err)
					return
				}
				waits.Add(1)
				time.Sleep(100 * time.Microsecond)
			}
		}
	})
	if err := t.log.Sync(); err != nil {
		b.Fatal(err)
	}
	t.store.Flush()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
	b.ReportMetric(float64(waits.Load())/float64(b.N), "waits/op")
	if st := t.store.Stats(); st.Records() != b.N {
		b.Errorf("store holds %d records of %d (%+v)", st.Records(), b.N, st)
	}
}
