package appliance

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lnm-project/lnm/forwarder"
)

// metrics holds the box's counters in Prometheus' text exposition format (version 0.0.4).
// It is small on purpose: counters and histograms with fixed label sets, registered once, so
// the hot paths do one map lookup under a short lock or a single atomic add.
type metrics struct {
	mu     sync.RWMutex // guards family and every family's series map
	order  []string     // metric names in registration order, for stable output
	family map[string]*family
}

type family struct {
	name, help, kind string // kind: counter, gauge, histogram
	labels           []string
	buckets          []float64 // histograms only
	series           map[labelKey]*series
	// gauge, when set, computes the value at scrape time (gauges without labels).
	gauge func() float64
}

type series struct {
	labelValues []string
	value       atomic.Uint64 // counters: the count; stored as float64 bits for gauges
	mu          sync.Mutex    // histograms
	counts      []uint64
	sum         float64
	total       uint64
}

func newMetrics() *metrics { return &metrics{family: map[string]*family{}} }

func (m *metrics) register(name, kind, help string, labels []string, buckets []float64) *family {
	if len(labels) > maxLabels {
		panic("appliance: metric " + name + " has more than maxLabels labels")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	f := &family{name: name, help: help, kind: kind, labels: labels, buckets: buckets, series: map[labelKey]*series{}}
	m.family[name] = f
	m.order = append(m.order, name)
	return f
}

func (m *metrics) counter(name, help string, labels ...string) *family {
	return m.register(name, "counter", help, labels, nil)
}

func (m *metrics) histogram(name, help string, buckets []float64, labels ...string) *family {
	return m.register(name, "histogram", help, labels, buckets)
}

// gaugeFunc registers a gauge computed at scrape time.
func (m *metrics) gaugeFunc(name, help string, fn func() float64) {
	m.register(name, "gauge", help, nil, nil).gauge = fn
}

// counterFunc registers a counter kept elsewhere and read at scrape time.
func (m *metrics) counterFunc(name, help string, fn func() float64) {
	m.register(name, "counter", help, nil, nil).gauge = fn
}

// labelKey identifies a series by its label values; families have at most maxLabels labels.
// An array key costs no allocation per lookup, which matters on the per-query path.
type labelKey [maxLabels]string

const maxLabels = 4

// series finds or creates the series of f with these label values. Lookups of existing
// series, all but the first of each, share a read lock.
func (m *metrics) series(f *family, values []string) *series {
	var key labelKey
	copy(key[:], values)
	m.mu.RLock()
	s := f.series[key]
	m.mu.RUnlock()
	if s != nil {
		return s
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if s = f.series[key]; s == nil {
		s = &series{labelValues: slices.Clone(values)}
		if f.kind == "histogram" {
			s.counts = make([]uint64, len(f.buckets))
		}
		f.series[key] = s
	}
	return s
}

// add increases a counter by n.
func (m *metrics) add(f *family, n uint64, values ...string) {
	m.series(f, values).value.Add(n)
}

// observe records one histogram sample.
func (m *metrics) observe(f *family, v float64, values ...string) {
	s := m.series(f, values)
	s.mu.Lock()
	for i, le := range f.buckets {
		if v <= le {
			s.counts[i]++
		}
	}
	s.sum += v
	s.total++
	s.mu.Unlock()
}

// WriteTo writes every family in the text exposition format.
func (m *metrics) WriteTo(w io.Writer) (int64, error) {
	var b strings.Builder
	m.mu.Lock()
	for _, name := range m.order {
		f := m.family[name]
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s %s\n", f.name, f.help, f.name, f.kind)
		if f.gauge != nil {
			fmt.Fprintf(&b, "%s %s\n", f.name, formatFloat(f.gauge()))
			continue
		}
		keys := make([]labelKey, 0, len(f.series))
		for k := range f.series {
			keys = append(keys, k)
		}
		slices.SortFunc(keys, func(a, b labelKey) int { return slices.Compare(a[:], b[:]) })
		for _, k := range keys {
			s := f.series[k]
			if f.kind != "histogram" {
				fmt.Fprintf(&b, "%s%s %d\n", f.name, labelText(f.labels, s.labelValues, "", ""), s.value.Load())
				continue
			}
			s.mu.Lock()
			for i, le := range f.buckets {
				fmt.Fprintf(&b, "%s_bucket%s %d\n", f.name, labelText(f.labels, s.labelValues, "le", formatFloat(le)), s.counts[i])
			}
			fmt.Fprintf(&b, "%s_bucket%s %d\n", f.name, labelText(f.labels, s.labelValues, "le", "+Inf"), s.total)
			fmt.Fprintf(&b, "%s_sum%s %s\n", f.name, labelText(f.labels, s.labelValues, "", ""), formatFloat(s.sum))
			fmt.Fprintf(&b, "%s_count%s %d\n", f.name, labelText(f.labels, s.labelValues, "", ""), s.total)
			s.mu.Unlock()
		}
	}
	m.mu.Unlock()
	n, err := io.WriteString(w, b.String())
	return int64(n), err
}

func labelText(names, values []string, extraName, extraValue string) string {
	if len(names) == 0 && extraName == "" {
		return ""
	}
	var b strings.Builder
	b.WriteByte('{')
	for i, n := range names {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(n)
		b.WriteString(`="`)
		b.WriteString(escapeLabel(values[i]))
		b.WriteByte('"')
	}
	if extraName != "" {
		if len(names) > 0 {
			b.WriteByte(',')
		}
		b.WriteString(extraName + `="` + extraValue + `"`)
	}
	b.WriteByte('}')
	return b.String()
}

func escapeLabel(s string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(s)
}

func formatFloat(v float64) string {
	if math.IsInf(v, +1) {
		return "+Inf"
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

// Buckets for the histograms: ClientHello sizes in bytes (classical hellos are ~300 bytes,
// post-quantum ones ~1.5–2 KiB), and latencies in seconds.
var (
	helloBuckets   = []float64{256, 512, 1024, 1536, 2048, 4096, 8192, 16384}
	latencyBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5}
)

// boxMetrics are the families lnm exports. The names of the retired Azure IoT Layered
// Network Management product's Grafana board (server_uptime, server_total_connections,
// tcp_downstream_cx_*_bytes_total, tls_inspector_sni_*) are kept so existing dashboards work.
type boxMetrics struct {
	*metrics
	dnsQueries, dnsLimited, conns, bytes, reloads             *family
	serverTotalConns, sniFound, sniNotFound, rxBytes, txBytes *family
	helloSize, resolveLatency, dialLatency                    *family
	active                                                    atomic.Int64
}

func newBoxMetrics(started time.Time) *boxMetrics {
	m := &boxMetrics{metrics: newMetrics()}
	m.dnsQueries = m.counter("lnm_dns_queries_total", "DNS questions answered, by type and verdict.", "qtype", "verdict")
	m.dnsLimited = m.counter("lnm_dns_rate_limited_total", "UDP queries over a client's rate limit, by action: slip (a truncated reply) or drop.", "action")
	m.conns = m.counter("lnm_connections_total", "Connections by port, verdict and reason.", "port", "verdict", "reason")
	m.bytes = m.counter("lnm_bytes_total", "Bytes spliced; up is from devices, down is to devices.", "direction")
	m.reloads = m.counter("lnm_reloads_total", "Configuration loads and reloads, by result.", "result")
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

// query counts one answered DNS question: the resolver's OnQuery runs it for every query.
func (m *boxMetrics) query(qtype, verdict string) {
	m.add(m.dnsQueries, 1, qtype, verdict)
}

// limited counts the queries a client sent over its rate limit in one period.
func (m *boxMetrics) limited(slipped, dropped uint64) {
	m.add(m.dnsLimited, slipped, "slip")
	m.add(m.dnsLimited, dropped, "drop")
}

// conn counts one forwarder event: the forwarder's OnEvent runs it for every connection's
// open or deny and every stream's close.
func (m *boxMetrics) conn(ev forwarder.Event) {
	port := strconv.Itoa(int(ev.Port))
	switch ev.Kind {
	case forwarder.EventOpen:
		m.active.Add(1)
		m.add(m.conns, 1, port, ev.Verdict, ev.Reason)
		m.observeConnect(ev)
	case forwarder.EventClose:
		m.active.Add(-1)
		m.add(m.bytes, uint64(ev.BytesUp), "up")
		m.add(m.bytes, uint64(ev.BytesDown), "down")
		m.add(m.rxBytes, uint64(ev.BytesUp))
		m.add(m.txBytes, uint64(ev.BytesDown))
	case forwarder.EventDeny:
		m.add(m.conns, 1, port, ev.Verdict, ev.Reason)
		m.observeConnect(ev)
	}
	if ev.Kind != forwarder.EventClose && ev.Via != forwarder.ViaTCP {
		m.add(m.serverTotalConns, 1)
		if ev.SNI != "" {
			m.add(m.sniFound, 1)
		} else if ev.Reason != "source_not_allowed" && ev.Reason != forwarder.ReasonTooManyPending {
			m.add(m.sniNotFound, 1)
		}
		if ev.HelloSize > 0 {
			m.observe(m.helloSize, float64(ev.HelloSize))
		}
	}
}

// observeConnect records how long finding and connecting the destination took. The way to
// a parent is its configured address, nothing is looked up, so that time is no resolve
// latency.
func (m *boxMetrics) observeConnect(ev forwarder.Event) {
	if ev.Resolve > 0 && ev.Via != forwarder.ViaParent {
		m.observe(m.resolveLatency, ev.Resolve.Seconds())
	}
	if ev.Dial > 0 {
		m.observe(m.dialLatency, ev.Dial.Seconds())
	}
}
