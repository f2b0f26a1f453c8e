package main

import (
	"fmt"
	"os"
	"time"
)

// runDNS runs every DNS contender once per round and returns the table and its raw values.
func runDNS(o options, t *tools, dir string) ([]string, error) {
	allowed, mix, err := dnsFiles(dir)
	if err != nil {
		return nil, err
	}
	tb := &table{
		title: fmt.Sprintf("DNS: dnsperf at saturation (%s a run), and latency at a fixed %d qps", o.dnsTime, o.fixedQPS),
		ref:   "unbound",
		metrics: []metric{
			{key: "qps", title: "qps, allowed", ratio: true},
			{key: "avg_us", title: "avg µs"},
			{key: "qps_mix", title: "qps, 30% not on the list", ratio: true},
			{key: "avg_mix_us", title: "avg µs"},
			{key: "p50_us", title: fmt.Sprintf("p50 µs at %d qps", o.fixedQPS)},
			{key: "p99_us", title: fmt.Sprintf("p99 µs at %d qps", o.fixedQPS), ratio: true},
			{key: "lost", title: "lost at that rate"},
		},
		notes: []string{
			"Every server answers bench.test and every name below it with one A record and refuses or NXDOMAINs the rest; " +
				"the run checks that before measuring. 10,000 allowed names (host0000.bench.test …); the mix has 30% names not on the list " +
				"(bench.test.evil.test, hostN.bench.test.evil.test, hostN.xbench.test, bench.hostN.test, hostN.example.test). " +
				"dnsperf: 2 threads, 8 sockets, 200 queries outstanding. p50/p99 from a Go client sending allowed names at a fixed rate from one socket; a query with no reply a second after the last one was sent counts as lost, not in p99.",
			"lnm runs with its defaults and auditing on (the log on disk and the store in memory); only `dns_rate_limit` is off, because all the load comes from one address. " +
				"unbound runs 2 threads with SO_REUSEPORT; dnsmasq is single-threaded; CoreDNS and lnm use both cores.",
		},
	}
	for _, s := range dnsServers(t) {
		tb.order = append(tb.order, s.name) // rows in a fixed order, the reference first
	}
	for r := range o.rounds {
		for _, s := range rotate(dnsServers(t), r) {
			sd, err := slot(dir, "dns", s.name, r)
			if err != nil {
				return nil, err
			}
			d, err := s.start(sd)
			if err != nil {
				return nil, err
			}
			track(d)
			err = measureDNS(o, s, r, tb, allowed, mix)
			if err != nil {
				err = fmt.Errorf("%w\n%s log:\n%s", err, s.name, d.tail())
			}
			d.stop()
			untrack(d)
			if !o.keep {
				os.RemoveAll(sd) // lnm's audit log of a round is hundreds of MB
			}
			if err != nil {
				fmt.Printf("round %d %s: FAILED: %v\n", r+1, s.name, err)
				tb.notes = append(tb.notes, fmt.Sprintf("Round %d, %s failed: %v", r+1, s.name, firstLine(err.Error())))
			}
		}
	}
	return []string{tb.markdown(), tb.raw()}, nil
}

func measureDNS(o options, s dnsServer, r int, tb *table, allowed, mix string) error {
	if err := checkDNS(s.hostPort()); err != nil {
		return err
	}
	for _, run := range []struct{ file, qps, avg string }{{allowed, "qps", "avg_us"}, {mix, "qps_mix", "avg_mix_us"}} {
		res, err := runDnsperf(s.addr, s.port, run.file, o.dnsTime)
		if err != nil {
			return err
		}
		fmt.Printf("round %d %-8s %-8s qps %9.0f avg %6.0f µs lost %d rcodes %s\n", r+1, s.name, run.qps, res.qps, us(res.avgLat), res.lost, res.rcodes)
		tb.record(r, s.name, run.qps, res.qps)
		tb.record(r, s.name, run.avg, us(res.avgLat))
	}
	res, err := fixedRate(s.hostPort(), allowedNames(), o.fixedQPS, o.fixedTime)
	if err != nil {
		return err
	}
	fmt.Printf("round %d %-8s fixed    p50 %6.0f µs p99 %6.0f µs lost %d of %d\n", r+1, s.name, us(res.p50), us(res.p99), res.lost, res.sent)
	tb.record(r, s.name, "p50_us", us(res.p50))
	tb.record(r, s.name, "p99_us", us(res.p99))
	tb.record(r, s.name, "lost", float64(res.lost))
	return nil
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
