package appliance

import (
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/lnm-project/lnm/allowlist"
	"github.com/lnm-project/lnm/audit"
	"github.com/lnm-project/lnm/forwarder"
)

// wantMetrics are the families lnm promises, with their types: the README's (the retired
// product's names, which dashboards use) and every lnm_ family. runtime marks those the
// running box registers (registerGauges), with an audit log.
var wantMetrics = []struct {
	name    string
	kind    dto.MetricType
	runtime bool
}{
	{name: "server_uptime", kind: dto.MetricType_GAUGE},
	{name: "server_total_connections", kind: dto.MetricType_COUNTER},
	{name: "tls_inspector_sni_found", kind: dto.MetricType_COUNTER},
	{name: "tls_inspector_sni_not_found", kind: dto.MetricType_COUNTER},
	{name: "tcp_downstream_cx_rx_bytes_total", kind: dto.MetricType_COUNTER},
	{name: "tcp_downstream_cx_tx_bytes_total", kind: dto.MetricType_COUNTER},
	{name: "lnm_dns_queries_total", kind: dto.MetricType_COUNTER},
	{name: "lnm_dns_rate_limited_total", kind: dto.MetricType_COUNTER},
	{name: "lnm_connections_total", kind: dto.MetricType_COUNTER},
	{name: "lnm_http_connections_total", kind: dto.MetricType_COUNTER},
	{name: "lnm_bytes_total", kind: dto.MetricType_COUNTER},
	{name: "lnm_reloads_total", kind: dto.MetricType_COUNTER},
	{name: "lnm_active_connections", kind: dto.MetricType_GAUGE},
	{name: "lnm_client_hello_bytes", kind: dto.MetricType_HISTOGRAM},
	{name: "lnm_upstream_resolve_seconds", kind: dto.MetricType_HISTOGRAM},
	{name: "lnm_upstream_dial_seconds", kind: dto.MetricType_HISTOGRAM},
	{name: "go_goroutines", kind: dto.MetricType_GAUGE},
	{name: "process_cpu_seconds_total", kind: dto.MetricType_COUNTER},
	{name: "lnm_store_records", kind: dto.MetricType_GAUGE, runtime: true},
	{name: "lnm_store_bytes", kind: dto.MetricType_GAUGE, runtime: true},
	{name: "lnm_audit_queue_depth", kind: dto.MetricType_GAUGE, runtime: true},
	{name: "lnm_audit_fsync_seconds", kind: dto.MetricType_GAUGE, runtime: true},
	{name: "lnm_audit_write_errors_total", kind: dto.MetricType_COUNTER, runtime: true},
	{name: "lnm_audit_refused_total", kind: dto.MetricType_COUNTER, runtime: true},
	{name: "lnm_audit_healthy", kind: dto.MetricType_GAUGE, runtime: true},
	{name: "lnm_connections_limited_total", kind: dto.MetricType_COUNTER, runtime: true},
	{name: "lnm_connections_summarized_total", kind: dto.MetricType_COUNTER, runtime: true},
	{name: "lnm_dns_tcp_refused_total", kind: dto.MetricType_COUNTER, runtime: true},
}

// checkMetricTypes fails t for every promised family missing from fams or of another type;
// with runtime false it leaves out the running box's own.
func checkMetricTypes(t *testing.T, fams map[string]*dto.MetricFamily, runtime bool) {
	t.Helper()
	for _, w := range wantMetrics {
		if w.runtime && !runtime {
			continue
		}
		switch f := fams[w.name]; {
		case f == nil:
			t.Errorf("%s: missing", w.name)
		case f.GetType() != w.kind:
			t.Errorf("%s: type %v, want %v", w.name, f.GetType(), w.kind)
		}
	}
}

// scrapeMetrics GETs url as a scraper that asks for nothing in particular and parses the
// text exposition it must get.
func scrapeMetrics(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain; version=0.0.4") {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s: %s, %q\n%s", url, resp.Status, resp.Header.Get("Content-Type"), body)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return fams
}

// series names one series: a family and its labels as name=value pairs in name order,
// comma-separated ("" for none).
type series struct{ family, labels string }

// metricValue is the value of s in fams: a counter's or gauge's value, a histogram's sample
// count. ok is false when fams has no such series.
func metricValue(fams map[string]*dto.MetricFamily, s series) (v float64, ok bool) {
	for _, m := range fams[s.family].GetMetric() {
		var labels []string
		for _, l := range m.GetLabel() { // the library writes them in name order
			labels = append(labels, l.GetName()+"="+l.GetValue())
		}
		if strings.Join(labels, ",") != s.labels {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		}
	}
	return 0, false
}

// serveTestMetrics serves m's /metrics on a loopback port and returns its URL.
func serveTestMetrics(t *testing.T, m *boxMetrics) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := serveMetrics(ln, m, slog.New(slog.DiscardHandler))
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String() + "/metrics"
}

// TestMetricsEndpoint scrapes the endpoint over HTTP: each event moves exactly the series
// it should, and every promised family is there with its type.
func TestMetricsEndpoint(t *testing.T) {
	m := newBoxMetrics(time.Now())
	url := serveTestMetrics(t, m)

	toParent := forwarder.Event{
		Kind: forwarder.EventOpen, Port: 443, SNI: "api.example.com", Verdict: forwarder.VerdictAllow,
		Reason: allowlist.ReasonListed, Via: forwarder.ViaParent, HelloSize: 1500, Resolve: time.Millisecond, Dial: 2 * time.Millisecond,
	}
	direct := toParent
	direct.Via = forwarder.ViaDirect
	closed := forwarder.Event{Kind: forwarder.EventClose, Port: 443, SNI: "api.example.com", Verdict: forwarder.VerdictAllow,
		Reason: forwarder.ReasonClientClosed, Via: forwarder.ViaParent, BytesUp: 300, BytesDown: 7000}
	noSNI := forwarder.Event{Kind: forwarder.EventDeny, Port: 443, Verdict: forwarder.VerdictDeny, Reason: forwarder.ReasonNoSNI, HelloSize: 200}
	outsider := forwarder.Event{Kind: forwarder.EventDeny, Port: 443, Verdict: forwarder.VerdictDeny, Reason: allowlist.ReasonSourceNotAllowed}
	tcpRoute := forwarder.Event{Kind: forwarder.EventOpen, Port: 1883, Verdict: forwarder.VerdictAllow, Reason: allowlist.ReasonListed, Via: forwarder.ViaTCP, Dial: time.Millisecond}

	var (
		queriesA      = series{"lnm_dns_queries_total", "qtype=A,verdict=allow"}
		queriesAAAA   = series{"lnm_dns_queries_total", "qtype=AAAA,verdict=deny"}
		slipped       = series{"lnm_dns_rate_limited_total", "action=slip"}
		dropped       = series{"lnm_dns_rate_limited_total", "action=drop"}
		conns443      = series{"lnm_connections_total", "port=443,reason=listed,verdict=allow"}
		connsNoSNI    = series{"lnm_connections_total", "port=443,reason=no_sni,verdict=deny"}
		connsOutsider = series{"lnm_connections_total", "port=443,reason=source_not_allowed,verdict=deny"}
		conns1883     = series{"lnm_connections_total", "port=1883,reason=listed,verdict=allow"}
		active        = series{"lnm_active_connections", ""}
		bytesUp       = series{"lnm_bytes_total", "direction=up"}
		bytesDown     = series{"lnm_bytes_total", "direction=down"}
		rx            = series{"tcp_downstream_cx_rx_bytes_total", ""}
		tx            = series{"tcp_downstream_cx_tx_bytes_total", ""}
		accepted      = series{"server_total_connections", ""}
		sniFound      = series{"tls_inspector_sni_found", ""}
		sniNotFound   = series{"tls_inspector_sni_not_found", ""}
		hellos        = series{"lnm_client_hello_bytes", ""}
		resolves      = series{"lnm_upstream_resolve_seconds", ""}
		dials         = series{"lnm_upstream_dial_seconds", ""}
		reloadsOK     = series{"lnm_reloads_total", "result=ok"}
		reloadsErr    = series{"lnm_reloads_total", "result=error"}
	)
	// Every series the cases watch, and whether it is exported (at zero) before its first
	// count: those with label values known up front are, the others appear when counted.
	watched := map[series]bool{
		queriesA: false, queriesAAAA: false, conns443: false, connsNoSNI: false, connsOutsider: false, conns1883: false,
		slipped: true, dropped: true, active: true, bytesUp: true, bytesDown: true, rx: true, tx: true, accepted: true,
		sniFound: true, sniNotFound: true, hellos: true, resolves: true, dials: true, reloadsOK: true, reloadsErr: true,
	}
	start := scrapeMetrics(t, url)
	for s, atStart := range watched {
		if v, ok := metricValue(start, s); ok != atStart || v != 0 {
			t.Errorf("at start %v: %v (exported %v), want exported %v at 0", s, v, ok, atStart)
		}
	}

	for _, tc := range []struct {
		name string
		do   func(m *boxMetrics)
		want map[series]float64 // what moves and by how much; every other watched series stays
	}{
		{"an allowed A query", func(m *boxMetrics) { m.query("A", audit.VerdictAllow) },
			map[series]float64{queriesA: 1}},
		{"a denied AAAA query", func(m *boxMetrics) { m.query("AAAA", audit.VerdictDeny) },
			map[series]float64{queriesAAAA: 1}},
		{"a client over its rate limit", func(m *boxMetrics) { m.limited(3, 5) },
			map[series]float64{slipped: 3, dropped: 5}},
		{"a TLS stream to the parent opens", func(m *boxMetrics) { m.conn(toParent) },
			map[series]float64{conns443: 1, active: 1, accepted: 1, sniFound: 1, hellos: 1, dials: 1}},
		{"a TLS stream to a resolved address opens", func(m *boxMetrics) { m.conn(direct) },
			map[series]float64{conns443: 1, active: 1, accepted: 1, sniFound: 1, hellos: 1, resolves: 1, dials: 1}},
		{"a stream closes", func(m *boxMetrics) { m.conn(closed) },
			map[series]float64{active: -1, bytesUp: 300, bytesDown: 7000, rx: 300, tx: 7000}},
		{"a hello without SNI is denied", func(m *boxMetrics) { m.conn(noSNI) },
			map[series]float64{connsNoSNI: 1, accepted: 1, sniNotFound: 1, hellos: 1}},
		{"a device outside sources is denied before its hello", func(m *boxMetrics) { m.conn(outsider) },
			map[series]float64{connsOutsider: 1, accepted: 1}},
		{"a static TCP route opens", func(m *boxMetrics) { m.conn(tcpRoute) },
			map[series]float64{conns1883: 1, active: 1, dials: 1}},
		{"a reload fails", func(m *boxMetrics) { m.reloaded(false) },
			map[series]float64{reloadsErr: 1}},
		{"a reload succeeds", func(m *boxMetrics) { m.reloaded(true) },
			map[series]float64{reloadsOK: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := scrapeMetrics(t, url)
			tc.do(m)
			after := scrapeMetrics(t, url)
			for s := range watched {
				v0, _ := metricValue(before, s)
				v1, ok := metricValue(after, s)
				if want := tc.want[s]; v1-v0 != want || (want != 0 && !ok) {
					t.Errorf("%s{%s}: moved by %v (exported %v), want %v", s.family, s.labels, v1-v0, ok, want)
				}
			}
		})
	}
	// Families with labels are exported from their first series, so only now are all there.
	checkMetricTypes(t, scrapeMetrics(t, url), false)
}

// BenchmarkMetricsQuery is what counting costs per DNS question: the metrics part of the
// resolver's OnQuery hook, for a series that exists (every query but a type's first).
// "parallel" runs it on every CPU at once, as the resolver's goroutines do.
func BenchmarkMetricsQuery(b *testing.B) {
	m := newBoxMetrics(time.Now())
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			m.query("A", audit.VerdictAllow)
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				m.query("A", audit.VerdictAllow)
			}
		})
	})
}

// BenchmarkMetricsConn is what counting costs per spliced TLS connection: the metrics part
// of the forwarder's OnEvent hook for its open and its close events.
func BenchmarkMetricsConn(b *testing.B) {
	m := newBoxMetrics(time.Now())
	open := forwarder.Event{
		Kind: forwarder.EventOpen, Client: netip.MustParseAddrPort("10.3.0.7:50000"), Port: 443,
		SNI: "api.example.com", Verdict: forwarder.VerdictAllow, Reason: allowlist.ReasonListed, Via: forwarder.ViaDirect,
		HelloSize: 1500, Resolve: 2 * time.Millisecond, Dial: 5 * time.Millisecond,
	}
	closed := open
	closed.Kind, closed.Reason, closed.BytesUp, closed.BytesDown = forwarder.EventClose, "client_closed", 4096, 65536
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			m.conn(open)
			m.conn(closed)
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				m.conn(open)
				m.conn(closed)
			}
		})
	})
}
