package console_test

import (
	"bufio"
	"context"
	"net/http"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// cpuTime is the process's user and system CPU time so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkConsoleCost measures what the console costs the box's DNS path: CPU per denied
// query (each one an audit record), the client in the same process, with nobody looking at
// the console (idle: its listener only), without one (off), and with one Live page following
// every record. Compare cpu-µs/query; the console does no work of its own when idle.
//
//	go test ./console -run '^$' -bench ConsoleCost -benchtime 20000x
func BenchmarkConsoleCost(b *testing.B) {
	for _, name := range []string{"off", "idle", "live"} {
		live := name == "live"
		b.Run(name, func(b *testing.B) {
			l, dir := newBox(b, "dns_rate_limit off")
			if name != "off" {
				l.startConsole(b, dir)
			}
			var events atomic.Int64
			if live {
				br := l.browser(b)
				if br.signIn("alice", password) != http.StatusSeeOther {
					b.Fatal("sign in")
				}
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				req, _ := http.NewRequestWithContext(ctx, "GET", l.url+"/live/events", nil)
				br.http.Timeout = 0
				resp, err := br.http.Do(req)
				if err != nil || resp.StatusCode != http.StatusOK {
					b.Fatalf("live: %v", err)
				}
				done := make(chan struct{})
				go func() {
					defer close(done)
					sc := bufio.NewScanner(resp.Body)
					for sc.Scan() {
						if strings.HasPrefix(sc.Text(), "data: ") {
							events.Add(1)
						}
					}
				}()
				defer func() { cancel(); resp.Body.Close(); <-done }()
			}
			c := &dns.Client{Timeout: 10 * time.Second}
			conn, err := c.Dial(l.dns)
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			m := new(dns.Msg).SetQuestion("bench.plant.test.", dns.TypeA)
			b.ResetTimer()
			start := cpuTime(b)
			for i := 0; i < b.N; i++ {
				m.Id = dns.Id()
				if _, _, err := c.ExchangeWithConn(m, conn); err != nil {
					b.Fatal(err)
				}
			}
			cpu := cpuTime(b) - start
			b.StopTimer()
			b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/query")
			if live {
				b.ReportMetric(float64(events.Load())/float64(b.N), "live-events/query")
			}
		})
	}
}
