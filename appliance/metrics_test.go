package appliance

import (
	"net/netip"
	"testing"
	"time"

	"github.com/lnm-project/lnm/audit"
	"github.com/lnm-project/lnm/forwarder"
)

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
		SNI: "api.example.com", Verdict: audit.VerdictAllow, Reason: "listed", Via: forwarder.ViaDirect,
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
