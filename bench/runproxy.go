package main

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"os"
	"time"
)

// runProxy starts the backend, runs every proxy contender once per round and returns the
// three tables and their raw values.
func runProxy(o options, t *tools, dir string) ([]string, error) {
	p, err := newPKI(dir)
	if err != nil {
		return nil, err
	}
	backend, err := startBackend(dir, p)
	if err != nil {
		return nil, err
	}
	defer func() { backend.stop(); untrack(backend) }()
	pq, x25519 := p.clientConfig(false), p.clientConfig(true)
	if err := waitReady(backendAddr, pq); err != nil {
		return nil, fmt.Errorf("%w\nbackend log:\n%s", err, backend.tail())
	}
	conns := &table{
		title: fmt.Sprintf("Proxy: new TLS connections (full handshake, one 2 KiB GET, close; %d clients, %s a run)", o.workers, o.connTime),
		ref:   "direct",
		metrics: []metric{
			{key: "cps_pq", title: "conn/s, X25519MLKEM768", ratio: true},
			{key: "cpu_pq", title: "proxy CPU ms per 1,000"},
			{key: "cps_x", title: "conn/s, X25519", ratio: true},
			{key: "cpu_x", title: "proxy CPU ms per 1,000"},
		},
		notes: []string{
			"The client is Go's crypto/tls with its default key shares (X25519MLKEM768 first), then with X25519 only; no session resumption. " +
				"Proxy CPU is user+system time of the proxy's processes (and their children) from /proc/PID/stat over the run, divided by the connections it carried. " +
				"The load generator, the backend and the proxy share the same 2 cores, so a proxy's CPU is taken from the others.",
			"lnm runs with its defaults and auditing on (the log on disk and the store in memory), with the rule `*.bench.test to " + backendAddr + "`: " +
				"like every peer here it reads the SNI, matches it and dials a fixed address. (At the top level lnm resolves the name through `upstream`, " +
				"and refuses a name that resolves to loopback, so the fixed destination is also the only way to reach a loopback backend.) " +
				"Its per-source connection limits (max_conns_per_source, conn_rate_limit) are off, because all the load comes from one address.",
		},
	}
	bulk := &table{
		title: fmt.Sprintf("Proxy: downloads of %d MiB each through one connection and four at once", o.bulkMiB),
		ref:   "direct",
		metrics: []metric{
			{key: "mibs_1", title: "1 stream MiB/s", ratio: true},
			{key: "cpu_gib_1", title: "proxy CPU s per GiB", digits: 2},
			{key: "mibs_4", title: "4 streams MiB/s (sum)", ratio: true},
			{key: "cpu_gib_4", title: "proxy CPU s per GiB", digits: 2},
		},
	}
	idle := &table{title: "Proxy: idle established connections (TLS handshake done end to end, then silent)", ref: "direct"}
	for _, n := range o.idle {
		idle.metrics = append(idle.metrics,
			metric{key: fmt.Sprintf("held_%d", n), title: fmt.Sprintf("held of %s", number(float64(n), 0))},
			metric{key: fmt.Sprintf("kib_%d", n), title: "KiB RSS per conn", digits: 1},
			metric{key: fmt.Sprintf("fds_%d", n), title: "open files per conn", digits: 2},
		)
	}
	idle.notes = []string{fmt.Sprintf("Memory is the growth of the proxy's resident set (VmRSS summed over its processes) from before the first connection, divided by the connections held; "+
		"open files the growth of /proc/PID/fd likewise. The open-file limit of every process is %d; the client and the backend are separate processes, each holding one file per connection. "+
		"A proxy that stops taking connections (64 failures in a row) is measured at what it held.", rlimitNOFILE())}
	for _, px := range proxies(t) {
		for _, tb := range []*table{conns, bulk, idle} {
			tb.order = append(tb.order, px.name)
		}
	}
	for r := range o.rounds {
		for _, px := range rotate(proxies(t), r) {
			err := measureProxy(o, px, r, dir, pq, x25519, conns, bulk, idle)
			if err != nil {
				fmt.Printf("round %d %s: FAILED: %v\n", r+1, px.name, err)
				conns.notes = append(conns.notes, fmt.Sprintf("Round %d, %s failed: %v", r+1, px.name, firstLine(err.Error())))
			}
		}
	}
	return []string{conns.markdown(), bulk.markdown(), idle.markdown(), conns.raw(), bulk.raw(), idle.raw()}, nil
}

// startBackend runs this binary as the TLS backend in a child process and waits for its
// "ready" line.
func startBackend(dir string, p *pki) (*daemon, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	d, err := startDaemon(dir, "backend", exe, "backend", backendAddr, p.certFile, p.keyFile, httpBackendAddr)
	if err != nil {
		return nil, err
	}
	track(d)
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if f, err := os.Open(d.log); err == nil {
			line, _ := bufio.NewReader(f).ReadString('\n')
			f.Close()
			if line == "ready\n" {
				return d, nil
			}
		}
	}
	return d, fmt.Errorf("bench: backend did not start:\n%s", d.tail())
}

// measureProxy runs one contender's slot: start it, the two new-connection runs, the two
// downloads, the idle connections, stop it.
func measureProxy(o options, px proxy, r int, dir string, pq, x25519 *tls.Config, conns, bulk, idle *table) error {
	var d *daemon
	if px.start != nil {
		sd, err := slot(dir, "proxy", px.name, r)
		if err != nil {
			return err
		}
		if !o.keep {
			defer os.RemoveAll(sd)
		}
		d, err = px.start(sd)
		if err != nil {
			return err
		}
		track(d)
		defer func() { d.stop(); untrack(d) }()
	}
	fail := func(err error) error {
		if d != nil {
			return fmt.Errorf("%w\n%s log:\n%s", err, px.name, d.tail())
		}
		return err
	}
	if err := waitReady(px.addr, pq); err != nil {
		return fail(err)
	}
	// cpu is the proxy's CPU time so far; direct has none to measure.
	cpu := func() (time.Duration, bool) {
		if d == nil {
			return 0, false
		}
		return measure(d.pid()).cpu, true
	}
	for _, run := range []struct {
		cfg       *tls.Config
		cps, cpus string
	}{{pq, "cps_pq", "cpu_pq"}, {x25519, "cps_x", "cpu_x"}} {
		before, ok := cpu()
		res := connRate(px.addr, run.cfg, o.connTime, o.workers)
		after, _ := cpu()
		rate := float64(res.ok) / res.elapsed.Seconds()
		conns.record(r, px.name, run.cps, rate)
		line := fmt.Sprintf("round %d %-8s %-6s %7.0f conn/s (%d failed)", r+1, px.name, run.cps, rate, res.failed)
		if ok && res.ok > 0 {
			ms := float64(after-before) / float64(time.Millisecond) / float64(res.ok) * 1000
			conns.record(r, px.name, run.cpus, ms)
			line += fmt.Sprintf(", proxy CPU %.0f ms per 1,000", ms)
		}
		fmt.Println(line)
		if res.ok == 0 {
			return fail(fmt.Errorf("bench: no connection through %s succeeded", px.name))
		}
	}
	size := o.bulkMiB << 20
	for _, par := range []int{1, 4} {
		before, ok := cpu()
		elapsed, err := download(px.addr, pq, size, par)
		after, _ := cpu()
		if err != nil {
			return fail(fmt.Errorf("bench: download through %s: %w", px.name, err))
		}
		mibs := float64(int64(par)*o.bulkMiB) / elapsed.Seconds()
		bulk.record(r, px.name, fmt.Sprintf("mibs_%d", par), mibs)
		line := fmt.Sprintf("round %d %-8s %d stream(s) %6.0f MiB/s", r+1, px.name, par, mibs)
		if ok {
			s := (after - before).Seconds() / (float64(int64(par)*size) / (1 << 30))
			bulk.record(r, px.name, fmt.Sprintf("cpu_gib_%d", par), s)
			line += fmt.Sprintf(", proxy CPU %.2f s per GiB", s)
		}
		fmt.Println(line)
	}
	measureIdle(o, px, r, d, pq, idle)
	return nil
}

// measureIdle opens idle connections up to each count in o.idle and records what the
// proxy's processes hold for them.
func measureIdle(o options, px proxy, r int, d *daemon, cfg *tls.Config, idle *table) {
	var base usage
	if d != nil {
		base = measure(d.pid())
	}
	set := &idleSet{}
	defer set.closeAll()
	for _, n := range o.idle {
		set.grow(px.addr, cfg, n)
		time.Sleep(time.Second) // let the proxy finish the last hand-offs
		held := len(set.conns)
		idle.record(r, px.name, fmt.Sprintf("held_%d", n), float64(held))
		line := fmt.Sprintf("round %d %-8s idle %d: held %d (%d failed)", r+1, px.name, n, held, set.failed)
		if d != nil && held > 0 {
			u := measure(d.pid())
			kib := float64(u.rss-base.rss) / 1024 / float64(held)
			fds := float64(u.fds-base.fds) / float64(held)
			idle.record(r, px.name, fmt.Sprintf("kib_%d", n), kib)
			idle.record(r, px.name, fmt.Sprintf("fds_%d", n), fds)
			line += fmt.Sprintf(", %.1f KiB and %.2f files per connection (RSS %d MiB, %d files)", kib, fds, u.rss>>20, u.fds)
		}
		fmt.Println(line)
	}
}
