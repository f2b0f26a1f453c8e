package main

import (
	"bufio"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// allowedNames is the 10,000 names on the list, host0000.bench.test to host9999.bench.test.
func allowedNames() []string {
	out := make([]string, 10000)
	for i := range out {
		out[i] = fmt.Sprintf("host%04d.bench.test", i)
	}
	return out
}

// deniedName is the i-th name not on the list, cycling through the shapes a matcher can get
// wrong: the zone as a label inside another zone, the zone as a suffix without a label
// boundary, the zone as a first label, and a plain other name.
func deniedName(i int) string {
	switch i % 5 {
	case 0:
		return "bench.test.evil.test"
	case 1:
		return fmt.Sprintf("host%04d.bench.test.evil.test", i%10000)
	case 2:
		return fmt.Sprintf("host%04d.xbench.test", i%10000)
	case 3:
		return fmt.Sprintf("bench.host%04d.test", i%10000)
	}
	return fmt.Sprintf("host%04d.example.test", i%10000)
}

// mixNames is 10,000 names, 30% of them not on the list, shuffled with a fixed seed so every
// contender gets the same order.
func mixNames() []string {
	allowed := allowedNames()
	out := make([]string, 0, 10000)
	out = append(out, allowed[:7000]...)
	for i := range 3000 {
		out = append(out, deniedName(i))
	}
	r := rand.New(rand.NewPCG(10, 2026))
	r.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

// writeQueryFile writes names as a dnsperf data file of A queries.
func writeQueryFile(path string, names []string) error {
	var b strings.Builder
	for _, n := range names {
		b.WriteString(n)
		b.WriteString(" A\n")
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

// checkDNS asks addr for an allowed name and three denied ones and fails unless the first
// gets an A record and the others NXDOMAIN or REFUSED: a server that answered everything
// would win the benchmark by being wrong.
func checkDNS(addr string) error {
	c := dns.Client{Timeout: time.Second}
	var last error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		last = checkDNSOnce(&c, addr)
		if last == nil {
			return nil
		}
	}
	return last
}

func checkDNSOnce(c *dns.Client, addr string) error {
	m := new(dns.Msg).SetQuestion("host0042.bench.test.", dns.TypeA)
	r, _, err := c.Exchange(m, addr)
	if err != nil {
		return fmt.Errorf("bench: %s: %w", addr, err)
	}
	if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
		return fmt.Errorf("bench: %s answered host0042.bench.test with %s and %d records", addr, dns.RcodeToString[r.Rcode], len(r.Answer))
	}
	for _, n := range []string{"bench.test.evil.test.", "host0001.xbench.test.", "bench.host0003.test."} {
		r, _, err := c.Exchange(new(dns.Msg).SetQuestion(n, dns.TypeA), addr)
		if err != nil {
			return fmt.Errorf("bench: %s: %w", addr, err)
		}
		if r.Rcode != dns.RcodeNameError && r.Rcode != dns.RcodeRefused {
			return fmt.Errorf("bench: %s answered %s with %s, want NXDOMAIN or REFUSED", addr, n, dns.RcodeToString[r.Rcode])
		}
	}
	return nil
}

// perfResult is what one dnsperf run reports.
type perfResult struct {
	qps       float64
	avgLat    time.Duration
	completed int64
	lost      int64
	rcodes    string // "NOERROR 7000 (70.00%), NXDOMAIN 3000 (30.00%)"
}

// dnsperfArgs saturates the server: two threads, eight sockets (so SO_REUSEPORT spreads the
// load over a server's threads), 200 queries outstanding.
func runDnsperf(addr string, port int, file string, d time.Duration) (perfResult, error) {
	out, err := exec.Command("dnsperf", "-s", addr, "-p", strconv.Itoa(port), "-d", file,
		"-l", strconv.Itoa(int(d.Seconds())), "-c", "8", "-T", "2", "-q", "200").CombinedOutput()
	if err != nil {
		return perfResult{}, fmt.Errorf("bench: dnsperf: %w: %s", err, out)
	}
	return parseDnsperf(string(out))
}

// parseDnsperf reads dnsperf 2.x's statistics block.
func parseDnsperf(out string) (perfResult, error) {
	var r perfResult
	var haveQPS, haveLat bool
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		key, val, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		val = strings.TrimSpace(val)
		first := strings.Fields(val + " ")
		switch key {
		case "Queries per second":
			v, err := strconv.ParseFloat(val, 64)
			if err != nil {
				return r, fmt.Errorf("bench: dnsperf qps %q: %w", val, err)
			}
			r.qps, haveQPS = v, true
		case "Average Latency (s)":
			v, err := strconv.ParseFloat(first[0], 64)
			if err != nil {
				return r, fmt.Errorf("bench: dnsperf latency %q: %w", val, err)
			}
			r.avgLat, haveLat = time.Duration(v*float64(time.Second)), true
		case "Queries completed":
			r.completed, _ = strconv.ParseInt(first[0], 10, 64)
		case "Queries lost":
			r.lost, _ = strconv.ParseInt(first[0], 10, 64)
		case "Response codes":
			r.rcodes = val
		}
	}
	if !haveQPS || !haveLat {
		return r, errors.New("bench: dnsperf printed no statistics: " + out)
	}
	return r, nil
}

// fixedResult is the latency distribution of a fixed-rate run.
type fixedResult struct {
	p50, p99   time.Duration
	sent, lost int
}

// fixedRate sends A queries for names to addr at rate per second for d from one UDP socket
// and measures each reply's latency: dnsperf -Q paces the same way but reports only the
// average. Replies are matched by ID; a query without a reply a second after the last send
// is lost.
func fixedRate(addr string, names []string, rate int, d time.Duration) (fixedResult, error) {
	total := int(d.Seconds() * float64(rate))
	if total > 65536 {
		return fixedResult{}, errors.New("bench: fixed-rate run longer than 65,536 queries")
	}
	conn, err := net.Dial("udp", addr)
	if err != nil {
		return fixedResult{}, fmt.Errorf("bench: fixed rate: %w", err)
	}
	defer conn.Close()
	// sentAt[i] is when query i left, as nanoseconds after start plus one (zero: not yet);
	// the sender writes it and the reader reads it.
	sentAt := make([]atomic.Int64, total)
	lat := make([]time.Duration, total)
	got := make([]bool, total)
	done := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(done)
		buf := make([]byte, 1500)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			if n < 2 {
				continue
			}
			id := int(buf[0])<<8 | int(buf[1])
			if id >= total || got[id] {
				continue
			}
			if at := sentAt[id].Load(); at != 0 {
				lat[id], got[id] = time.Since(start)-time.Duration(at-1), true
			}
		}
	}()
	interval := time.Second / time.Duration(rate)
	for i := range total {
		if wait := time.Until(start.Add(time.Duration(i) * interval)); wait > 0 {
			time.Sleep(wait)
		}
		m := new(dns.Msg).SetQuestion(dns.Fqdn(names[i%len(names)]), dns.TypeA)
		m.Id = uint16(i)
		wire, err := m.Pack()
		if err != nil {
			return fixedResult{}, fmt.Errorf("bench: fixed rate pack: %w", err)
		}
		sentAt[i].Store(int64(time.Since(start)) + 1)
		if _, err := conn.Write(wire); err != nil {
			return fixedResult{}, fmt.Errorf("bench: fixed rate send: %w", err)
		}
	}
	time.Sleep(time.Second)
	_ = conn.SetReadDeadline(time.Now())
	<-done
	var ok []time.Duration
	for i := range total {
		if got[i] {
			ok = append(ok, lat[i])
		}
	}
	if len(ok) == 0 {
		return fixedResult{sent: total, lost: total}, errors.New("bench: fixed rate: no replies")
	}
	slices.Sort(ok)
	return fixedResult{p50: quantile(ok, 0.50), p99: quantile(ok, 0.99), sent: total, lost: total - len(ok)}, nil
}

// quantile is the q-quantile of sorted by the nearest-rank method.
func quantile(sorted []time.Duration, q float64) time.Duration {
	i := int(q*float64(len(sorted))+0.999999) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// dnsFiles writes the two query files into dir.
func dnsFiles(dir string) (allowed, mix string, err error) {
	allowed, mix = filepath.Join(dir, "allowed.txt"), filepath.Join(dir, "mix.txt")
	if err := writeQueryFile(allowed, allowedNames()); err != nil {
		return "", "", fmt.Errorf("bench: %w", err)
	}
	if err := writeQueryFile(mix, mixNames()); err != nil {
		return "", "", fmt.Errorf("bench: %w", err)
	}
	return allowed, mix, nil
}
