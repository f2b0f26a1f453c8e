package console_test

import (
	"bufio"
	"context"
	"fmt"
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
			var events, connects atomic.Int64
			if live {
				br := l.browser(b)
				if br.signIn("alice", password) != http.StatusSeeOther {
					b.Fatal("sign in")
				}
				ctx, cancel := context.WithCancel(context.Background())
				br.http.Timeout = 0
				// follow reads the stream and, when the box drops it (a follower that falls
				// 1024 records behind is cut), connects again at once, as a page's
				// EventSource does after its retry delay: the worst case.
				follow := func() error {
					req, _ := http.NewRequestWithContext(ctx, "GET", l.url+"/live/events", nil)
					resp, err := br.http.Do(req)
					if err != nil {
						return err
					}
					defer resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						return fmt.Errorf("live: %s", resp.Status)
					}
					connects.Add(1)
					sc := bufio.NewScanner(resp.Body)
					for sc.Scan() {
						if strings.HasPrefix(sc.Text(), "data: ") {
							events.Add(1)
						}
					}
					return nil
				}
				done := make(chan struct{})
				go func() {
					defer close(done)
					for ctx.Err() == nil {
						if err := follow(); err != nil && ctx.Err() == nil {
							b.Error(err)
							return
						}
					}
				}()
				defer func() { cancel(); <-done }()
				for deadline := time.Now().Add(30 * time.Second); connects.Load() == 0; time.Sleep(10 * time.Millisecond) {
					if time.Now().After(deadline) {
						b.Fatal("the Live stream did not open within 30 s")
					}
				}
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
				b.ReportMetric(float64(connects.Load()), "live-connects")
			}
		})
	}
}
