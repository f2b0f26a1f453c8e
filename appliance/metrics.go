package appliance

import (
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/lnm-project/lnm/allowlist"
	"github.com/lnm-project/lnm/forwarder"
)

// Buckets for the histograms: ClientHello sizes in bytes (classical hellos are ~300 bytes,
// post-quantum ones ~1.5–2 KiB), and latencies in seconds.
var (
	helloBuckets   = []float64{256, 512, 1024, 1536, 2048, 4096, 8192, 16384}
	latencyBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5}
)

// boxMetrics are the series lnm exports, in a registry of their own (never the library's
// global one, so two runtimes in one process, as in tests, count apart). The names of the
// retired Azure IoT Layered Network Management product's Grafana board (server_uptime,
// server_total_connections, tcp_downstream_cx_*_bytes_total, tls_inspector_sni_*) are kept
// so existing dashboards work.
//
// The hot paths (query, conn) only add to counters held here: series whose label values
// are known up front are fields, the others are found in a counterVec's cache.
type boxMetrics struct {
	reg *prometheus.Registry

	dnsQueries             *counterVec // qtype, verdict
	dnsSlipped, dnsDropped prometheus.Counter
	conns                  *counterVec // port, verdict, reason
	frontConns             *counterVec // proto (http, connect), verdict
	bytesUp, bytesDown     prometheus.Counter
	reloadsOK, reloadsErr  prometheus.Counter
	active                 atomic.Int64

	helloSize, resolveLatency, dialLatency prometheus.Histogram

	serverTotalConns, sniFound, sniNotFound, rxBytes, txBytes prometheus.Counter
}

// newBoxMetrics registers every series but the runtime's gauges (registerGauges), and Go's
// and the process's own (goroutines, heap, GC pauses, CPU, memory, open files): they are
// what tells a leak or a stall from load, and every exporter's scrapers expect them.
func newBoxMetrics(started time.Time) *boxMetrics {
	m := &boxMetrics{reg: prometheus.NewRegistry()}
	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	m.dnsQueries = m.counterVec("lnm_dns_queries_total", "DNS questions answered, by type and verdict.", "qtype", "verdict")
	limited := m.counterVec("lnm_dns_rate_limited_total", "UDP queries over a client's rate limit, by action: slip (a truncated reply) or drop.", "action")
	m.dnsSlipped, m.dnsDropped = limited.child("slip"), limited.child("drop")
	m.conns = m.counterVec("lnm_connections_total", "Connections by port, verdict and reason.", "port", "verdict", "reason")
	m.frontConns = m.counterVec("lnm_http_connections_total", "Connections on http and connect ports, by proto and verdict (counted in lnm_connections_total too).", "proto", "verdict")
	for _, p := range []forwarder.Front{forwarder.FrontHTTP, forwarder.FrontConnect} {
		for _, v := range forwarder.Verdicts() {
			m.frontConns.child(p.String(), v.String())
		}
	}
	bytes := m.counterVec("lnm_bytes_total", "Bytes spliced; up is from devices, down is to devices.", "direction")
	m.bytesUp, m.bytesDown = bytes.child("up"), bytes.child("down")
	reloads := m.counterVec("lnm_reloads_total", "Configuration loads and reloads, by result.", "result")
	m.reloadsOK, m.reloadsErr = reloads.child("ok"), reloads.child("error")
	m.gaugeFunc("lnm_active_connections", "Streams being spliced now.", func() float64 { return float64(m.active.Load()) })
	m.helloSize = m.histogram("lnm_client_hello_bytes", "ClientHello handshake message sizes.", helloBuckets)
	m.resolveLatency = m.histogram("lnm_upstream_resolve_seconds", "Time to resolve a destination name.", latencyBuckets)
	m.dialLatency = m.histogram("lnm_upstream_dial_seconds", "Time to connect upstream.", latencyBuckets)

	// The retired product's names.
	m.gaugeFunc("server_uptime", "Seconds since the box started.", func() float64 { return time.Since(started).Seconds() })
	m.serverTotalConns = m.counter("server_total_connections", "Connections accepted on proxy ports.")
	m.sniFound = m.counter("tls_inspector_sni_found", "ClientHellos that carried a usable SNI.")
	m.sniNotFound = m.counter("tls_inspector_sni_not_found", "Connections closed without a usable SNI.")
	m.rxBytes = m.counter("tcp_downstream_cx_rx_bytes_total", "Bytes received from devices (sent to the upper level).")
	m.txBytes = m.counter("tcp_downstream_cx_tx_bytes_total", "Bytes sent to devices (received from the upper level).")
	return m
}

func (m *boxMetrics) counter(name, help string) prometheus.Counter {
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	m.reg.MustRegister(c)
	return c
}

func (m *boxMetrics) counterVec(name, help string, labels ...string) *counterVec {
	c := newCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels...)
	m.reg.MustRegister(c.vec)
	return c
}

func (m *boxMetrics) histogram(name, help string, buckets []float64) prometheus.Histogram {
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets})
	m.reg.MustRegister(h)
	return h
}

// gaugeFunc registers a gauge computed at scrape time.
func (m *boxMetrics) gaugeFunc(name, help string, fn func() float64) {
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, fn))
}

// limitedFunc registers the series of lnm_connections_limited_total for one reason, kept by
// the forwarders and read at scrape time.
func (m *boxMetrics) limitedFunc(reason string, fn func() uint64) {
	m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name:        "lnm_connections_limited_total",
		Help:        "Connections a limit closed at once (or, hello_evicted, while waiting for their ClientHello), recorded or summarized, by reason.",
		ConstLabels: prometheus.Labels{"reason": reason},
	}, func() float64 { return float64(fn()) }))
}

// counterFunc registers a counter kept elsewhere and read at scrape time.
func (m *boxMetrics) counterFunc(name, help string, fn func() float64) {
	m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, fn))
}

// query counts one answered DNS question: the resolver's OnQuery runs it for every query.
func (m *boxMetrics) query(qtype, verdict string) {
	m.dnsQueries.add(1, qtype, verdict)
}

// limited counts the queries a client sent over its rate limit in one period.
func (m *boxMetrics) limited(slipped, dropped uint64) {
	m.dnsSlipped.Add(float64(slipped))
	m.dnsDropped.Add(float64(dropped))
}

// reloaded counts a configuration load or reload.
func (m *boxMetrics) reloaded(ok bool) {
	if ok {
		m.reloadsOK.Inc()
	} else {
		m.reloadsErr.Inc()
	}
}

// conn counts one forwarder event: the forwarder's OnEvent runs it for every connection's
// open or deny and every stream's close.
func (m *boxMetrics) conn(ev forwarder.Event) {
	switch ev.Kind {
	case forwarder.EventOpen:
		m.active.Add(1)
		m.conns.add(1, strconv.Itoa(int(ev.Port)), ev.Verdict.String(), string(ev.Reason))
		m.observeConnect(ev)
	case forwarder.EventClose:
		m.active.Add(-1)
		m.bytesUp.Add(float64(ev.BytesUp))
		m.bytesDown.Add(float64(ev.BytesDown))
		m.rxBytes.Add(float64(ev.BytesUp))
		m.txBytes.Add(float64(ev.BytesDown))
	case forwarder.EventDeny:
		m.conns.add(1, strconv.Itoa(int(ev.Port)), ev.Verdict.String(), string(ev.Reason))
		m.observeConnect(ev)
	}
	if ev.Kind != forwarder.EventClose && ev.Proto != forwarder.FrontTLS {
		m.frontConns.add(1, ev.Proto.String(), ev.Verdict.String())
	}
	if ev.Kind != forwarder.EventClose && ev.Via != forwarder.ViaTCP {
		m.serverTotalConns.Inc()
		tls := ev.Proto == forwarder.FrontTLS // an http or connect port reads no ClientHello first
		if tls && ev.SNI != "" {
			m.sniFound.Inc()
		} else if tls && ev.Reason != allowlist.ReasonSourceNotAllowed && !limitReason(ev.Reason) {
			m.sniNotFound.Inc()
		}
		if ev.HelloSize > 0 {
			m.helloSize.Observe(float64(ev.HelloSize))
		}
	}
}

// observeConnect records how long finding and connecting the destination took. The way to
// a parent is its configured address, nothing is looked up, so that time is no resolve
// latency.
func (m *boxMetrics) observeConnect(ev forwarder.Event) {
	if ev.Resolve > 0 && ev.Via != forwarder.ViaParent {
		m.resolveLatency.Observe(ev.Resolve.Seconds())
	}
	if ev.Dial > 0 {
		m.dialLatency.Observe(ev.Dial.Seconds())
	}
}

// limitReason reports whether a limit closed the connection before any hello was read.
func limitReason(r allowlist.Reason) bool {
	switch r {
	case forwarder.ReasonTooManyPending, forwarder.ReasonTooManyConns, forwarder.ReasonConnRateLimited:
		return true
	}
	return false
}
