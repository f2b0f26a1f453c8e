package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lnm-project/lnm/adminapi"
	"github.com/lnm-project/lnm/audit"
)

// testZone is the "local" zone of every golden file: fixed, with a name, unlike the machine's.
var testZone = time.FixedZone("CET", 3600)

// testNow is "now" for relative times: shortly after the last fixed record.
var testNow = time.Date(2026, 3, 1, 9, 30, 0, 0, time.UTC)

// fixClock pins the commands' clock and zone for the test.
func fixClock(t *testing.T) {
	t.Helper()
	saved := clock
	clock.now = func() time.Time { return testNow }
	clock.loc = testZone
	t.Cleanup(func() { clock = saved })
}

func at(hms string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, "2026-03-01T"+hms+"Z")
	if err != nil {
		panic(err)
	}
	return t
}

func intp(n int) *int { return &n }

var (
	device   = netip.MustParseAddr("198.18.3.20")
	device2  = netip.MustParseAddr("198.18.3.21")
	device6  = netip.MustParseAddr("fd00:3::20")
	boxAddr  = netip.MustParseAddr("198.18.3.1")
	parentAP = netip.MustParseAddrPort("198.18.4.1:443")
)

// earlyQuery is the dns record the sni_mismatch connection links to: within the link window
// but before --since 15m, so the CLI has to fetch it by seq.
var earlyQuery = audit.Record{
	Seq: 3, Time: at("09:08:00.000"), Box: "l3-plant", Level: 3,
	Kind: audit.KindDNS, Client: netip.AddrPortFrom(device2, 0), Name: "login.azure.test", QType: "A",
	Verdict: audit.VerdictAllow, Rule: "*.azure.test (lnm.conf:12)", Rcode: "NOERROR",
	Answer: []netip.Addr{boxAddr},
}

// fixedRecords covers every kind, verdict, event and flag, and values a table must escape.
func fixedRecords() []audit.Record {
	box := func(r audit.Record) audit.Record { r.Box, r.Level = "l3-plant", 3; return r }
	return []audit.Record{
		box(audit.Record{Seq: 10, Time: at("09:15:00.000"), Kind: audit.KindConfig, Change: "start", Hash: "sha256:9f86d081884c7d65"}),
		box(audit.Record{Seq: 11, Time: at("09:15:01.500"), Kind: audit.KindConfig, Change: "allow add *.vendor.test", Hash: "sha256:60303ae22b998861", UID: intp(1000)}),
		box(audit.Record{Seq: 12, Time: at("09:15:02.123"), Kind: audit.KindDNS, Client: netip.AddrPortFrom(device, 0),
			Name: "api.azure.test", QType: "A", Verdict: audit.VerdictAllow, Rule: "*.azure.test (lnm.conf:12)",
			Rcode: "NOERROR", Answer: []netip.Addr{boxAddr}}),
		box(audit.Record{Seq: 13, Time: at("09:15:02.125"), Kind: audit.KindDNS, Client: netip.AddrPortFrom(device, 0),
			Name: "api.azure.test", QType: "AAAA", Verdict: audit.VerdictAllow, Rule: "*.azure.test (lnm.conf:12)",
			Rcode: "NOERROR", Answer: []netip.Addr{}}),
		box(audit.Record{Seq: 14, Time: at("09:15:02.180"), Kind: audit.KindConn, Event: audit.EventOpen, ID: 7,
			Client: netip.AddrPortFrom(device, 51234), Port: 443, SNI: "api.azure.test", ALPN: []string{"h2", "http/1.1"},
			Verdict: audit.VerdictAllow, Rule: "*.azure.test (lnm.conf:12)", Upstream: parentAP, Via: "parent", QuerySeq: 12}),
		box(audit.Record{Seq: 15, Time: at("09:15:03.000"), Kind: audit.KindDNS, Client: netip.AddrPortFrom(device, 0),
			Name: "evil.example", QType: "A", Verdict: audit.VerdictDeny, Reason: "not_allowed", Rcode: "NXDOMAIN"}),
		box(audit.Record{Seq: 16, Time: at("09:15:03.500"), Kind: audit.KindDNS, Client: netip.AddrPortFrom(device6, 0),
			Name: "telemetry.vendor.test", QType: "HTTPS", Verdict: audit.VerdictRefused, Reason: "source_not_allowed", Rcode: "REFUSED"}),
		box(audit.Record{Seq: 17, Time: at("09:15:04.000"), Kind: audit.KindDNS, Client: netip.AddrPortFrom(device2, 0),
			Name: "updates.vendor.test", QType: "A", Verdict: audit.VerdictWouldDeny, Reason: "not_allowed", Rcode: "NOERROR",
			Answer: []netip.Addr{boxAddr}}),
		box(audit.Record{Seq: 18, Time: at("09:15:04.525"), Kind: audit.KindConn, Event: audit.EventClose, ID: 7,
			Client: netip.AddrPortFrom(device, 51234), Port: 443, SNI: "api.azure.test",
			Verdict: audit.VerdictAllow, Reason: "eof", Upstream: parentAP, Via: "parent", QuerySeq: 12,
			BytesUp: 1234, BytesDown: 35_389, DurationMS: 2345}),
		box(audit.Record{Seq: 19, Time: at("09:15:05.000"), Kind: audit.KindConn, Event: audit.EventOpen, ID: 8,
			Client: netip.AddrPortFrom(device, 40000), Port: 443, SNI: "historian.plant.test",
			Verdict: audit.VerdictAllow, Rule: "historian.plant.test 443 to 198.18.4.20:443 (lnm.conf:15)",
			Upstream: netip.MustParseAddrPort("198.18.4.20:443"), Via: "to", Flags: []string{audit.FlagUnlinked}}),
		box(audit.Record{Seq: 20, Time: at("09:15:05.250"), Kind: audit.KindConn, Event: audit.EventOpen, ID: 9,
			Client: netip.AddrPortFrom(device2, 40001), Port: 443, SNI: "api.azure.test",
			Verdict: audit.VerdictAllow, Rule: "*.azure.test (lnm.conf:12)", Upstream: parentAP, Via: "parent",
			QuerySeq: 3, Flags: []string{audit.FlagSNIMismatch}}),
		box(audit.Record{Seq: 21, Time: at("09:15:06.000"), Kind: audit.KindConn, Event: audit.EventDeny, ID: 10,
			Client: netip.AddrPortFrom(device, 40002), Port: 8883, SNI: "mqtt.evil.example",
			Verdict: audit.VerdictDeny, Reason: "not_allowed", Flags: []string{audit.FlagUnlinked}}),
		box(audit.Record{Seq: 22, Time: at("09:15:06.500"), Kind: audit.KindConn, Event: audit.EventClose, ID: 11,
			Client: netip.AddrPortFrom(device2, 40003), Port: 1883, Verdict: audit.VerdictAllow, Reason: "idle_timeout",
			Upstream: netip.MustParseAddrPort("198.18.3.2:1883"), Via: "tcp",
			BytesUp: 10 << 20, BytesDown: 3 << 30, DurationMS: 3_600_000}),
		box(audit.Record{Seq: 23, Time: at("09:15:07.000"), Kind: audit.KindConn, Event: audit.EventDeny, ID: 12,
			Client: netip.AddrPortFrom(device, 40004), Port: 443, SNI: "x\x1b[31m.test", Verdict: audit.VerdictDeny,
			Reason: "bad name\n", Flags: []string{audit.FlagUnlinked}}),
		box(audit.Record{Seq: 24, Time: at("09:15:08.000"), Kind: audit.KindConn, Event: audit.EventOpen, ID: 13,
			Client: netip.AddrPortFrom(device6, 40005), Port: 443, SNI: "api.azure.test",
			Verdict: audit.VerdictWouldDeny, Reason: "not_allowed", Upstream: parentAP, Via: "parent", QuerySeq: 2}),
		box(audit.Record{Seq: 25, Time: at("09:15:09.000"), Kind: audit.KindSummary, Reason: "audit_queue_full", Count: 1234}),
	}
}

// boxRecords is every record the fake box holds: the fixed ones and earlyQuery (seq 2, the
// query of seq 24, is gone: evicted).
func boxRecords() []audit.Record {
	return append([]audit.Record{earlyQuery}, fixedRecords()...)
}

// fakeBox serves the admin API on a Unix socket from fixed records and a fixed status.
type fakeBox struct {
	socket  string
	records []audit.Record
	status  adminapi.Status
	// follow: after streaming the matching records, hold the stream open until the client
	// leaves (true) or close it as a stopping box does (false).
	holdFollow bool

	mu      sync.Mutex
	queries []string // the raw query of every GET /v1/audit and /v1/audit/follow
}

// socketDir returns a short directory for sockets: t.TempDir can exceed sun_path's 108 bytes.
func socketDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "lnm-cli")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func startFakeBox(t *testing.T, fb *fakeBox) *fakeBox {
	t.Helper()
	fb.socket = filepath.Join(socketDir(t), "admin.sock")
	ln, err := net.Listen("unix", fb.socket)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+adminapi.PathAudit, func(w http.ResponseWriter, r *http.Request) {
		fb.mu.Lock()
		fb.queries = append(fb.queries, r.URL.RawQuery)
		fb.mu.Unlock()
		q, err := adminapi.ParseQuery(r.URL.Query())
		if err != nil {
			apiError(w, http.StatusBadRequest, err)
			return
		}
		var out []audit.Record
		for _, rec := range fb.records {
			if len(q.Seqs) > 0 {
				if slices.Contains(q.Seqs, rec.Seq) {
					out = append(out, rec)
				}
			} else if q.Match(&rec) {
				out = append(out, rec)
			}
		}
		if q.Limit > 0 && len(out) > q.Limit {
			out = out[len(out)-q.Limit:]
		}
		w.Header().Set("Content-Type", "application/x-ndjson")
		for _, rec := range out {
			w.Write(append(rec.AppendJSON(nil), '\n'))
		}
	})
	mux.HandleFunc("GET "+adminapi.PathAuditFollow, func(w http.ResponseWriter, r *http.Request) {
		fb.mu.Lock()
		fb.queries = append(fb.queries, r.URL.RawQuery)
		fb.mu.Unlock()
		q, err := adminapi.ParseQuery(r.URL.Query())
		if err != nil {
			apiError(w, http.StatusBadRequest, err)
			return
		}
		w.Header().Set("Content-Type", "application/x-ndjson")
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		for _, rec := range fb.records {
			if q.Match(&rec) {
				w.Write(append(rec.AppendJSON(nil), '\n'))
				w.(http.Flusher).Flush()
			}
		}
		if fb.holdFollow {
			<-r.Context().Done()
		}
	})
	mux.HandleFunc("GET "+adminapi.PathStatus, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(fb.status)
	})
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("fake box shutdown: %v", err)
		}
	})
	return fb
}

func apiError(w http.ResponseWriter, code int, err error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(adminapi.APIError{Error: err.Error()})
}

func (fb *fakeBox) requests() []string {
	fb.mu.Lock()
	defer fb.mu.Unlock()
	return slices.Clone(fb.queries)
}

// writeConfig writes an lnm.conf whose admin socket and audit directory are the given ones
// ("off" turns either off).
func writeConfig(t *testing.T, admin, auditDir string, extra ...string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "lnm.conf")
	text := fmt.Sprintf("lnm {\n    listen 127.0.0.1\n    admin %s\n    audit %s\n%s}\n", admin, auditDir, indent(extra))
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func indent(lines []string) string {
	var b strings.Builder
	for _, l := range lines {
		b.WriteString("    " + l + "\n")
	}
	return b.String()
}

// sampleStatus is a busy level-3 box.
func sampleStatus() adminapi.Status {
	return adminapi.Status{
		Box: "l3-plant", Level: 3, Version: "v0.3.0", Config: "/etc/lnm/lnm.conf",
		Started: at("06:03:00.000"), UptimeS: 3*3600 + 12*60 + 5, Mode: "enforce",
		Parent: &adminapi.ParentStatus{Addr: "198.18.4.1:443", Reachable: true, RTTMS: 2},
		Listeners: []adminapi.Listener{
			{Proto: "dns/udp", Addr: "198.18.3.1:53"}, {Proto: "dns/tcp", Addr: "198.18.3.1:53"},
			{Proto: "proxy", Addr: "198.18.3.1:443"}, {Proto: "proxy", Addr: "198.18.3.1:8883"},
			{Proto: "tcp-route", Addr: "198.18.3.1:1883"},
		},
		Rules: 5,
		Counters: adminapi.Counters{DNSQueries: 1234, DNSDenied: 12, DNSRateLimited: 48211, Conns: 345, ConnsDenied: 3,
			BytesUp: 1_300_000, BytesDown: 36_000_000},
		Active:     5,
		TopClients: []adminapi.Count{{Key: "198.18.3.20", Count: 1123}, {Key: "198.18.3.21", Count: 45}, {Key: "fd00:3::20", Count: 7}},
		TopNames:   []adminapi.Count{{Key: "api.azure.test", Count: 900}, {Key: "mqtt.vendor.test", Count: 80}},
		Audit:      adminapi.AuditStatus{Dir: "/var/lib/lnm/audit", Healthy: true, Queue: 0, LastSeq: 12345, Written: 12345},
		Store:      adminapi.StoreStatus{Records: 12000, Bytes: 3_500_000, Oldest: at("06:03:00.120")},
	}
}
