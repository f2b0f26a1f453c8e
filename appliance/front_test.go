package appliance

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lnm-project/lnm/adminapi"
	"github.com/lnm-project/lnm/audit"
	"github.com/lnm-project/lnm/config"
	"github.com/lnm-project/lnm/internal/testkit"
)

// TestTrailHTTPPorts runs a box with an http and a connect port: an allowed and a denied
// plain HTTP request and a refused CONNECT are audit records with their proto, counted in
// lnm_http_connections_total, and lnm status lists the listeners by kind.
func TestTrailHTTPPorts(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Fatal(err)
	}
	origin := &httptest.Server{Listener: ln, Config: &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "host=%s", r.Host)
	})}}
	origin.Start()
	defer origin.Close()
	originPort := ln.Addr().(*net.TCPAddr).Port
	httpPort, connectPort, metricsPort := testkit.FreePort(t), testkit.FreePort(t), testkit.FreePort(t)
	dir := t.TempDir()
	text := fmt.Sprintf(`lnm {
    listen  127.0.0.1
    dns     off
    http    %d:%d
    connect %d
    parent  127.0.0.2
    admin   %s/admin.sock
    audit   %s/audit
    metrics 127.0.0.1:%d
    allow {
        *.azure.test
    }
}
`, httpPort, originPort, connectPort, dir, dir, metricsPort)
	cfg, err := config.Parse(filepath.Join(dir, "lnm.conf"), strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	rt, err := Start(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()

	send := func(port uint16, req string) string {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(20 * time.Second))
		io.WriteString(c, req)
		b, _ := io.ReadAll(c)
		return string(b)
	}
	if got := send(httpPort, "GET / HTTP/1.1\r\nHost: api.azure.test\r\n\r\n"); !strings.Contains(got, "host=api.azure.test") {
		t.Fatalf("allowed request: %q", got)
	}
	if got := send(httpPort, "GET / HTTP/1.1\r\nHost: evil.test\r\n\r\n"); !strings.HasPrefix(got, "HTTP/1.1 403 ") {
		t.Fatalf("denied request: %q", got)
	}
	if got := send(connectPort, "CONNECT evil.test:443 HTTP/1.1\r\n\r\n"); !strings.HasPrefix(got, "HTTP/1.1 403 ") {
		t.Fatalf("denied CONNECT: %q", got)
	}

	api := adminClient(filepath.Join(dir, "admin.sock"))
	var byKey map[string]audit.Record
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		byKey = map[string]audit.Record{}
		for _, r := range getRecords(t, api, adminapi.Query{Filter: audit.Filter{Kind: audit.KindConn}}) {
			byKey[r.Proto+" "+r.SNI+" "+r.Event] = r
		}
		if len(byKey) >= 4 || time.Now().After(deadline) {
			break
		}
	}
	for _, key := range []string{"http api.azure.test open", "http api.azure.test close", "http evil.test deny", "connect evil.test deny"} {
		if _, ok := byKey[key]; !ok {
			t.Errorf("no record %q; have %v", key, keys(byKey))
		}
	}
	if r := byKey["http api.azure.test close"]; r.Via != "parent" || r.BytesDown == 0 {
		t.Errorf("close record %+v", r)
	}

	fams := scrapeMetrics(t, fmt.Sprintf("http://127.0.0.1:%d/metrics", metricsPort))
	for s, want := range map[series]float64{
		{"lnm_http_connections_total", "proto=http,verdict=allow"}:   1,
		{"lnm_http_connections_total", "proto=http,verdict=deny"}:    1,
		{"lnm_http_connections_total", "proto=connect,verdict=deny"}: 1,
		{"tls_inspector_sni_found", ""}:                              0,
		{"tls_inspector_sni_not_found", ""}:                          0,
	} {
		if v, ok := metricValue(fams, s); v != want {
			t.Errorf("%s{%s} = %v (exported %v), want %v", s.family, s.labels, v, ok, want)
		}
	}

	resp, err := api.Get("http://lnm" + adminapi.PathStatus)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st adminapi.Status
	if err := json.NewDecoder(bufio.NewReader(resp.Body)).Decode(&st); err != nil {
		t.Fatal(err)
	}
	protos := map[string]string{}
	for _, l := range st.Listeners {
		protos[l.Addr] = l.Proto
	}
	if protos[fmt.Sprintf("127.0.0.1:%d", httpPort)] != "http" || protos[fmt.Sprintf("127.0.0.1:%d", connectPort)] != "connect" {
		t.Errorf("listeners %+v", st.Listeners)
	}
}

func keys(m map[string]audit.Record) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
