// Command bench is lnm's side-by-side benchmark against the peers an operator would
// otherwise deploy: unbound, dnsmasq and CoreDNS for DNS, HAProxy, nginx and sniproxy for
// SNI proxying. `make bench-peers` runs it as root on Debian 12; it is never part of
// `make test`. Everything runs on loopback, one contender at a time, in an order rotated
// each round, and the tables give medians of per-round ratios against the same round's
// reference (unbound for DNS, direct for the proxy). README.md says what each number means.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// options are the run's knobs; the defaults are the full run.
type options struct {
	rounds     int
	dnsTime    time.Duration // each saturating dnsperf run
	fixedTime  time.Duration // the fixed-rate latency run
	fixedQPS   int
	connTime   time.Duration // each new-connections run
	workers    int           // concurrent connections in the new-connections run
	bulkMiB    int64
	idle       []int // idle connection counts, ascending
	parts      string
	out        string
	repo       string
	coreDNSBin string
	keep       bool
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "backend" {
		if err := runBackend(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	o := options{}
	flag.IntVar(&o.rounds, "rounds", envInt("BENCH_ROUNDS", 3), "rounds, each running every contender once (env BENCH_ROUNDS)")
	flag.DurationVar(&o.dnsTime, "dns-time", 10*time.Second, "length of each saturating dnsperf run")
	flag.DurationVar(&o.fixedTime, "fixed-time", 10*time.Second, "length of the fixed-rate latency run")
	flag.IntVar(&o.fixedQPS, "fixed-qps", 2000, "queries per second of the fixed-rate latency run")
	flag.DurationVar(&o.connTime, "conn-time", 5*time.Second, "length of each new-connections run")
	flag.IntVar(&o.workers, "conn-workers", 32, "concurrent clients in the new-connections run")
	flag.Int64Var(&o.bulkMiB, "bulk-mib", 1024, "size of each download in MiB")
	idle := flag.String("idle", "5000,9500", "idle connection counts to measure memory and open files at")
	flag.StringVar(&o.parts, "parts", "dns,proxy,http", "which parts to run: dns, proxy, http")
	flag.StringVar(&o.out, "out", "bench/results.md", "file the tables are written to")
	flag.StringVar(&o.repo, "repo", ".", "the lnm checkout to build")
	flag.StringVar(&o.coreDNSBin, "coredns", os.Getenv("BENCH_COREDNS"), "a CoreDNS binary to use instead of building one, or off (env BENCH_COREDNS)")
	flag.BoolVar(&o.keep, "keep", false, "keep the temp dir (configs, logs, audit logs)")
	flag.Parse()
	for f := range strings.SplitSeq(*idle, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			fmt.Fprintf(os.Stderr, "bench: -idle: %q is not a count\n", f)
			os.Exit(2)
		}
		o.idle = append(o.idle, n)
	}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}

// running holds every process the harness started, so an interrupt stops them all.
var running struct {
	sync.Mutex
	ds map[*daemon]bool
}

func track(d *daemon) {
	running.Lock()
	defer running.Unlock()
	if running.ds == nil {
		running.ds = map[*daemon]bool{}
	}
	running.ds[d] = true
}

func untrack(d *daemon) {
	running.Lock()
	defer running.Unlock()
	delete(running.ds, d)
}

// stopAll stops what is still running; the harness calls it on the way out.
func stopAll() {
	running.Lock()
	ds := running.ds
	running.ds = nil
	running.Unlock()
	for d := range ds {
		d.stop()
	}
}

func run(o options) error {
	// The peers inherit the limit: 9,500 idle connections need 19,000 files in the proxy,
	// and the load generator holds one per connection too.
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil {
		lim.Cur = lim.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sig
		fmt.Fprintln(os.Stderr, "interrupted: stopping every contender")
		stopAll()
		os.Exit(130)
	}()
	defer stopAll()

	if err := installPeers(); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "lnm-bench-")
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	if !o.keep {
		defer os.RemoveAll(dir)
	}
	repo, _ := filepath.Abs(o.repo)
	t, err := buildTools(repo, dir, o.coreDNSBin)
	if err != nil {
		return err
	}
	header := fmt.Sprintf("Machine: %s. Open-file limit %d. Command: `%s`. Versions: %s. %d rounds; %s.",
		machine(), lim.Cur, strings.Join(append([]string{"bench"}, os.Args[1:]...), " "), strings.Join(t.versions, ", "), o.rounds, time.Now().UTC().Format("2006-01-02 15:04 MST"))
	fmt.Println(header)
	var out []string
	for part := range strings.SplitSeq(o.parts, ",") {
		switch strings.TrimSpace(part) {
		case "dns":
			tables, err := runDNS(o, t, dir)
			if err != nil {
				return err
			}
			out = append(out, tables...)
		case "proxy":
			tables, err := runProxy(o, t, dir)
			if err != nil {
				return err
			}
			out = append(out, tables...)
		case "http":
			tables, err := runHTTP(o, t, dir)
			if err != nil {
				return err
			}
			out = append(out, tables...)
		default:
			return fmt.Errorf("bench: -parts: unknown part %q", part)
		}
	}
	text := header + "\n\n" + strings.Join(out, "\n")
	fmt.Println()
	fmt.Println(text)
	if err := os.WriteFile(o.out, []byte(text), 0o644); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	fmt.Println("written to", o.out)
	return nil
}

// slot makes a fresh directory for one contender's run: its config, log and audit log.
func slot(dir, part, name string, round int) (string, error) {
	d := filepath.Join(dir, fmt.Sprintf("%s-%d-%s", part, round, strings.ToLower(name)))
	if err := os.MkdirAll(d, 0o755); err != nil {
		return "", fmt.Errorf("bench: %w", err)
	}
	return d, nil
}
