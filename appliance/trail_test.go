package appliance

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/lnm-project/lnm/adminapi"
	"github.com/lnm-project/lnm/allowlist"
	"github.com/lnm-project/lnm/audit"
	"github.com/lnm-project/lnm/config"
	"github.com/lnm-project/lnm/forwarder"
	"github.com/lnm-project/lnm/internal/testkit"
	"github.com/lnm-project/lnm/store"
)

// adminClient talks HTTP to the admin socket.
func adminClient(sock string) *http.Client {
	return &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}}}
}

func getRecords(t *testing.T, c *http.Client, q adminapi.Query) []audit.Record {
	t.Helper()
	resp, err := c.Get("http://lnm" + adminapi.PathAudit + "?" + q.Values().Encode())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s: %s %s", adminapi.PathAudit, resp.Status, b)
	}
	var out []audit.Record
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		var r audit.Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("bad line %q: %v", sc.Text(), err)
		}
		out = append(out, r)
	}
	return out
}

// TestTrailLinksQueryToConnection runs a box on loopback whose parent is a TLS server, makes
// a DNS query and the connection that follows, and reads the linked records back through the
// admin API, from memory and, after a restart, from the audit log on disk.
func TestTrailLinksQueryToConnection(t *testing.T) {
	ca := testkit.NewCA(t)
	backendPort := testkit.TLSEcho(t, "127.0.0.2:0", ca.Issue(t, "api.azure.test", "other.azure.test")).Port()
	dnsPort, proxyPort, metricsPort := testkit.FreePort(t), testkit.FreePort(t), testkit.FreePort(t)
	dir := t.TempDir()
	text := fmt.Sprintf(`lnm {
    name    test-box
    level   3
    listen  127.0.0.1
    dns     %d
    proxy   %d:%d
    parent  127.0.0.2
    admin   %s/admin.sock
    audit   %s/audit
    metrics 127.0.0.1:%d
    allow {
        *.azure.test
    }
}
`, dnsPort, proxyPort, backendPort, dir, dir, metricsPort)
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

	m := new(dns.Msg).SetQuestion("Api.Azure.Test.", dns.TypeA)
	if r, err := dns.Exchange(m, fmt.Sprintf("127.0.0.1:%d", dnsPort)); err != nil || len(r.Answer) != 1 {
		t.Fatalf("query: %v %v", r, err)
	}
	talk := func(sni string) {
		c, err := tls.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", proxyPort), ca.Client(sni))
		if err != nil {
			t.Fatalf("%s: %v", sni, err)
		}
		defer c.Close()
		io.WriteString(c, "ping")
		want := sni + ":ping" // the parent's echo names the SNI it saw
		buf := make([]byte, len(want))
		if _, err := io.ReadFull(c, buf); err != nil || string(buf) != want {
			t.Fatalf("%s: reply %q, %v; want %q", sni, buf, err, want)
		}
	}
	talk("api.azure.test")   // follows the query
	talk("other.azure.test") // resolved elsewhere: unlinked, and the client asked for another name

	api := adminClient(filepath.Join(dir, "admin.sock"))
	var recs []audit.Record
	deadline := time.Now().Add(5 * time.Second)
	for { // close records arrive when the streams end
		recs = getRecords(t, api, adminapi.Query{Filter: audit.Filter{Kind: audit.KindConn}})
		if len(recs) >= 4 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	dnsRecs := getRecords(t, api, adminapi.Query{Filter: audit.Filter{Kind: audit.KindDNS}})
	if len(dnsRecs) != 1 || dnsRecs[0].Name != "api.azure.test" || dnsRecs[0].Box != "test-box" || dnsRecs[0].Level != 3 {
		t.Fatalf("dns records %+v", dnsRecs)
	}
	querySeq := dnsRecs[0].Seq
	byEvent := map[string][]audit.Record{}
	for _, r := range recs {
		byEvent[r.SNI+" "+r.Event] = append(byEvent[r.SNI+" "+r.Event], r)
	}
	for _, key := range []string{"api.azure.test open", "api.azure.test close"} {
		rs := byEvent[key]
		if len(rs) != 1 || rs[0].QuerySeq != querySeq || len(rs[0].Flags) != 0 {
			t.Errorf("%s: %+v, want one record linked to query %d", key, rs, querySeq)
		}
	}
	if c := byEvent["api.azure.test close"]; len(c) == 1 && (c[0].BytesUp < 100 || c[0].BytesDown < 100) {
		t.Errorf("close without bytes: %+v", c[0])
	}
	if o := byEvent["other.azure.test open"]; len(o) != 1 || o[0].QuerySeq != 0 ||
		!o[0].HasFlag(audit.FlagUnlinked) || !o[0].HasFlag(audit.FlagSNIMismatch) {
		t.Errorf("other.azure.test open: %+v, want unlinked and sni_mismatch", o)
	}

	// Metrics, with the retired product's names, as a scraper reads them.
	fams := scrapeMetrics(t, fmt.Sprintf("http://127.0.0.1:%d/metrics", metricsPort))
	checkMetricTypes(t, fams, true)
	for s, want := range map[series]float64{
		{"lnm_dns_queries_total", "qtype=A,verdict=allow"}:                                       1,
		{"lnm_connections_total", fmt.Sprintf("port=%d,reason=listed,verdict=allow", proxyPort)}: 2,
		{"tls_inspector_sni_found", ""}:                                                          2,
		{"server_total_connections", ""}:                                                         2,
		{"lnm_client_hello_bytes", ""}:                                                           2,
		{"lnm_reloads_total", "result=ok"}:                                                       1,
		{"lnm_audit_healthy", ""}:                                                                1,
	} {
		if v, ok := metricValue(fams, s); v != want {
			t.Errorf("%s{%s} = %v (exported %v), want %v", s.family, s.labels, v, ok, want)
		}
	}
	if v, _ := metricValue(fams, series{"tcp_downstream_cx_rx_bytes_total", ""}); v < 100 {
		t.Errorf("tcp_downstream_cx_rx_bytes_total = %v, want the bytes of two streams", v)
	}

	// Status.
	resp, err := api.Get("http://lnm" + adminapi.PathStatus)
	if err != nil {
		t.Fatal(err)
	}
	var st adminapi.Status
	json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	if st.Box != "test-box" || st.Parent == nil || !st.Parent.Reachable || st.Counters.DNSQueries != 1 ||
		st.Counters.Conns != 2 || !st.Audit.Healthy || len(st.TopNames) == 0 {
		t.Errorf("status %+v", st)
	}

	// After a graceful stop every record is on disk, and a new box continues the sequence
	// and reads the old records from its log.
	lastSeq := st.Audit.LastSeq
	if err := rt.Close(); err != nil {
		t.Fatal(err)
	}
	var onDisk []audit.Record
	if err := audit.Read(filepath.Join(dir, "audit"), audit.Filter{}, func(r *audit.Record) bool {
		onDisk = append(onDisk, *r)
		return true
	}); err != nil {
		t.Fatal(err)
	}
	for i, r := range onDisk {
		if r.Seq != uint64(i+1) {
			t.Fatalf("record %d on disk has seq %d: a gap or a duplicate", i, r.Seq)
		}
	}
	if last := onDisk[len(onDisk)-1]; last.Kind != audit.KindConfig || last.Change != "stop" || last.Seq <= lastSeq {
		t.Errorf("last record on disk %+v, want the stop record after seq %d", last, lastSeq)
	}
	rt2, err := Start(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer rt2.Close()
	old := getRecords(t, api, adminapi.Query{Filter: audit.Filter{Kind: audit.KindDNS}})
	if len(old) != 1 || old[0].Seq != querySeq {
		t.Errorf("after restart the box returns %+v, want the old query from the log", old)
	}
	all := getRecords(t, api, adminapi.Query{})
	if n := len(all); n != len(onDisk)+1 || all[n-1].Change == "" || all[n-1].Seq != uint64(len(onDisk)+1) {
		t.Errorf("after restart: %d records, last %+v; want the %d old ones and a start record", n, all[n-1], len(onDisk))
	}
}

// The arrays in front of miekg/dns's maps name every code as the maps do, and codes the
// maps do not know get the generic form.
func TestCodeNames(t *testing.T) {
	for q := range 1 << 16 {
		want, ok := dns.TypeToString[uint16(q)]
		if !ok {
			want = "TYPE" + strconv.Itoa(q)
		}
		if got := qtypeText(uint16(q)); got != want {
			t.Fatalf("qtypeText(%d) = %q, want %q", q, got, want)
		}
	}
	for rc := -1; rc < 5000; rc++ {
		want, ok := dns.RcodeToString[rc]
		if !ok {
			want = "RCODE" + strconv.Itoa(rc)
		}
		if got := rcodeText(rc); got != want {
			t.Fatalf("rcodeText(%d) = %q, want %q", rc, got, want)
		}
	}
}

// The rule-text cache gives what ruleText gives, for a rule seen before or not, and stays
// bounded as reloads bring new rules.
func TestRuleTexts(t *testing.T) {
	var c ruleTexts
	if got := c.text(nil); got != "" {
		t.Errorf("nil rule: %q", got)
	}
	rules := make([]allowlist.Rule, 3*maxRuleTexts)
	for i := range rules {
		p, err := allowlist.ParsePattern(fmt.Sprintf("h%d.example.com", i))
		if err != nil {
			t.Fatal(err)
		}
		rules[i] = allowlist.Rule{Pattern: p, Origin: fmt.Sprintf("lnm.allow:%d", i+1)}
	}
	for round := range 2 {
		for i := range rules {
			r := &rules[i]
			if got, want := c.text(r), ruleText(r); got != want {
				t.Fatalf("round %d rule %d: %q, want %q", round, i, got, want)
			}
		}
	}
	if n := c.n.Load(); n < 1 || n > maxRuleTexts {
		t.Errorf("cache holds %d texts, bound %d", n, maxRuleTexts)
	}
	held := 0
	c.m.Range(func(any, any) bool { held++; return true })
	if held > maxRuleTexts {
		t.Errorf("cache map holds %d texts, bound %d", held, maxRuleTexts)
	}
}

// A device flooding the box's DNS over UDP gets its rate answered and is summarized, not
// recorded packet by packet: the audit log has one record per answered query and, after
// the box stops, one dns_rate_limited summary counting the rest.
func TestDNSRateLimitSummary(t *testing.T) {
	const rate, sent = 20, 200
	dnsPort := testkit.FreePort(t)
	dir := t.TempDir()
	text := fmt.Sprintf(`lnm {
    level   3
    listen  127.0.0.1
    dns     %d
    admin   off
    audit   %s/audit
    dns_rate_limit %d
    allow {
        api.azure.test
    }
}
`, dnsPort, dir, rate)
	cfg, err := config.Parse(filepath.Join(dir, "lnm.conf"), strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	rt, err := Start(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("udp", fmt.Sprintf("127.0.0.1:%d", dnsPort))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	replies := make(chan int)
	go func() {
		n := 0
		buf := make([]byte, 1500)
		for {
			conn.SetReadDeadline(time.Now().Add(time.Second))
			if _, err := conn.Read(buf); err != nil {
				replies <- n
				return
			}
			n++
		}
	}()
	wire, _ := new(dns.Msg).SetQuestion("api.azure.test.", dns.TypeA).Pack()
	for i := range sent {
		conn.Write(wire)
		if i%20 == 19 {
			time.Sleep(time.Millisecond)
		}
	}
	got := <-replies
	if err := rt.Close(); err != nil {
		t.Fatal(err)
	}

	var dnsRecs, limited int
	var summaries []audit.Record
	err = audit.Read(filepath.Join(dir, "audit"), audit.Filter{}, func(r *audit.Record) bool {
		switch {
		case r.Kind == audit.KindDNS:
			dnsRecs++
		case r.Kind == audit.KindSummary && r.Reason == ReasonDNSRateLimited:
			summaries = append(summaries, *r)
			limited += int(r.Count)
		}
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	if dnsRecs < rate || dnsRecs > rate+5 {
		t.Errorf("%d dns records for %d queries at a limit of %d", dnsRecs, sent, rate)
	}
	if dnsRecs+limited != sent {
		t.Errorf("%d recorded and %d summarized, %d sent", dnsRecs, limited, sent)
	}
	if len(summaries) != 1 || summaries[0].Client.Addr() != netip.MustParseAddr("127.0.0.1") {
		t.Errorf("summaries %+v, want one for 127.0.0.1", summaries)
	}
	// The device got its answers and a truncated reply for every second query over the limit.
	if want := dnsRecs + limited/2; got < want-1 || got > want+1 {
		t.Errorf("the client got %d replies, want about %d", got, want)
	}
}

// TestTrailECHFlag: a connection decided on an Encrypted Client Hello's outer name carries
// the ech flag on its records, beside the link flags.
func TestTrailECHFlag(t *testing.T) {
	st, err := store.New(store.Config{})
	if err != nil {
		t.Fatal(err)
	}
	tr := &trail{store: st, metrics: newBoxMetrics(time.Now())}
	client := netip.MustParseAddrPort("198.18.3.20:50000")
	for i, ech := range []bool{true, false} {
		ev := forwarder.Event{Time: time.Now(), Kind: forwarder.EventDeny, ID: uint64(i + 1), Client: client, Port: 443,
			SNI: "public.example.test", ECH: ech, Verdict: forwarder.VerdictDeny, Reason: allowlist.ReasonNotListed}
		if err := tr.onConn(ev); err != nil {
			t.Fatal(err)
		}
	}
	st.Flush()
	recs := st.Query(audit.Filter{Kind: audit.KindConn})
	if len(recs) != 2 {
		t.Fatalf("%d records, want 2", len(recs))
	}
	for _, r := range recs {
		if want := r.ID == 1; r.HasFlag(audit.FlagECH) != want {
			t.Errorf("record of stream %d: flags %v, want ech %v", r.ID, r.Flags, want)
		}
		if !r.HasFlag(audit.FlagUnlinked) {
			t.Errorf("record of stream %d: flags %v, want unlinked kept beside ech", r.ID, r.Flags)
		}
	}
}
