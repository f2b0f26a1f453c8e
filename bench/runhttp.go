package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
)

// httpBackendAddr is the plain HTTP origin (the backend process's second listener).
const httpBackendAddr = "127.0.0.20:8080"

// httpProxies are the contenders that route plain HTTP by Host without terminating it:
// lnm's `http` port and sniproxy's http listener. (HAProxy and nginx would be HTTP reverse
// proxies, parsing every request: another job.)
func httpProxies(t *tools) []proxy {
	return []proxy{
		{name: "direct", addr: httpBackendAddr},
		{name: "lnm", addr: "127.0.0.21:8080", start: func(dir string) (*daemon, error) { return startLnmHTTP(t.lnm, dir) }},
		{name: "sniproxy", addr: "127.0.0.24:8080", start: startSniproxyHTTP},
	}
}

// startLnmHTTP runs lnm with its defaults and auditing on, one http port, and the rule
// sending *.bench.test to the plain backend.
func startLnmHTTP(bin, dir string) (*daemon, error) {
	path, err := writeConf(dir, "lnm-http.conf", fmt.Sprintf(`lnm {
    listen  127.0.0.21
    dns     off
    http    8080
    admin   %s
    audit   %s
    max_conns_per_source off   # the load comes from one address
    conn_rate_limit      off   # likewise
    allow {
        *.bench.test to %s
    }
}
`, filepath.Join(dir, "admin.sock"), filepath.Join(dir, "audit"), httpBackendAddr))
	if err != nil {
		return nil, err
	}
	return startDaemon(dir, "lnm", bin, "run", "--config", path)
}

// startSniproxyHTTP runs sniproxy with an http listener: it reads the Host header and
// forwards the connection, replaying the request.
func startSniproxyHTTP(dir string) (*daemon, error) {
	path, err := writeConf(dir, "sniproxy.conf", fmt.Sprintf(`user root
pidfile %s
error_log {
    filename %s
    priority notice
}
listener 127.0.0.24:8080 {
    protocol http
    table bench
}
table bench {
    ^.*\.bench\.test$ %s
}
`, filepath.Join(dir, "sniproxy.pid"), filepath.Join(dir, "sniproxy-error.log"), httpBackendAddr))
	if err != nil {
		return nil, err
	}
	return startDaemon(dir, "sniproxy", "sniproxy", "-f", "-c", path)
}

// runHTTP measures new plain HTTP connections through each contender: connect, one small
// GET with the Host header, read the reply, close.
func runHTTP(o options, t *tools, dir string) ([]string, error) {
	p, err := newPKI(dir)
	if err != nil {
		return nil, err
	}
	backend, err := startBackend(dir, p)
	if err != nil {
		return nil, err
	}
	defer func() { backend.stop(); untrack(backend) }()
	if err := waitReadyPlain(httpBackendAddr); err != nil {
		return nil, fmt.Errorf("%w\nbackend log:\n%s", err, backend.tail())
	}
	conns := &table{
		title: fmt.Sprintf("Plain HTTP by Host: new connections (one 2 KiB GET, close; %d clients, %s a run)", o.workers, o.connTime),
		ref:   "direct",
		metrics: []metric{
			{key: "cps", title: "conn/s", ratio: true},
			{key: "cpu", title: "proxy CPU ms per 1,000"},
		},
		notes: []string{
			"The client sends `GET /small HTTP/1.1` with `Host: " + backendName + "` and `Connection: close` on a new connection each time. " +
				"lnm (`http 8080`, rule `*.bench.test to " + httpBackendAddr + "`, defaults and auditing on) and sniproxy (`protocol http`) read the Host, match it, " +
				"dial a fixed address and replay the request; lnm also rewrites the head's Connection field (one request per connection). " +
				"HAProxy and nginx are left out: in HTTP mode they are reverse proxies that parse every request, not the same job.",
		},
	}
	for _, px := range httpProxies(t) {
		conns.order = append(conns.order, px.name)
	}
	for r := range o.rounds {
		for _, px := range rotate(httpProxies(t), r) {
			if err := measureHTTP(o, px, r, dir, conns); err != nil {
				fmt.Printf("round %d %s: FAILED: %v\n", r+1, px.name, err)
				conns.notes = append(conns.notes, fmt.Sprintf("Round %d, %s failed: %v", r+1, px.name, firstLine(err.Error())))
			}
		}
	}
	return []string{conns.markdown(), conns.raw()}, nil
}

func measureHTTP(o options, px proxy, r int, dir string, conns *table) error {
	var d *daemon
	if px.start != nil {
		sd, err := slot(dir, "http", px.name, r)
		if err != nil {
			return err
		}
		if !o.keep {
			defer os.RemoveAll(sd)
		}
		if d, err = px.start(sd); err != nil {
			return err
		}
		track(d)
		defer func() { d.stop(); untrack(d) }()
	}
	if err := waitReadyPlain(px.addr); err != nil {
		if d != nil {
			return fmt.Errorf("%w\n%s log:\n%s", err, px.name, d.tail())
		}
		return err
	}
	var before time.Duration
	if d != nil {
		before = measure(d.pid()).cpu
	}
	res := connRatePlain(px.addr, o.connTime, o.workers)
	rate := float64(res.ok) / res.elapsed.Seconds()
	conns.record(r, px.name, "cps", rate)
	line := fmt.Sprintf("round %d %-8s http %7.0f conn/s (%d failed)", r+1, px.name, rate, res.failed)
	if d != nil && res.ok > 0 {
		ms := float64(measure(d.pid()).cpu-before) / float64(time.Millisecond) / float64(res.ok) * 1000
		conns.record(r, px.name, "cpu", ms)
		line += fmt.Sprintf(", proxy CPU %.0f ms per 1,000", ms)
	}
	fmt.Println(line)
	if res.ok == 0 {
		return fmt.Errorf("bench: no HTTP connection through %s succeeded", px.name)
	}
	return nil
}

// connRatePlain is connRate without TLS.
func connRatePlain(addr string, d time.Duration, workers int) connResult {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var ok, failed atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range workers {
		wg.Go(func() {
			for ctx.Err() == nil {
				c, err := net.DialTimeout("tcp", addr, 5*time.Second)
				if err == nil {
					c.SetDeadline(time.Now().Add(10 * time.Second))
					_, err = get(c, "/small")
					c.Close()
				}
				if err != nil {
					failed.Add(1)
					continue
				}
				ok.Add(1)
			}
		})
	}
	wg.Wait()
	return connResult{ok: ok.Load(), failed: failed.Load(), elapsed: time.Since(start)}
}

// waitReadyPlain polls addr until a plain GET through it succeeds, for up to ten seconds.
func waitReadyPlain(addr string) error {
	var last error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err == nil {
			c.SetDeadline(time.Now().Add(5 * time.Second))
			_, err = get(c, "/small")
			c.Close()
			if err == nil {
				return nil
			}
		}
		last = err
	}
	return fmt.Errorf("bench: %s not ready: %w", addr, last)
}
