package main

// The commands against a real box: appliance.Start in this process on loopback, its admin
// socket and audit log in temporary directories, its parent a TLS echo server on 127.0.0.2.

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/lnm-project/lnm/adminapi"
	"github.com/lnm-project/lnm/appliance"
	"github.com/lnm-project/lnm/audit"
	"github.com/lnm-project/lnm/config"
	"github.com/lnm-project/lnm/internal/testkit"
)

// lineWith returns the first line of out containing every one of subs.
func lineWith(out string, subs ...string) string {
next:
	for _, l := range strings.Split(out, "\n") {
		for _, s := range subs {
			if !strings.Contains(l, s) {
				continue next
			}
		}
		return l
	}
	return ""
}

func TestAuditBox(t *testing.T) {
	ca := testkit.NewCA(t)
	parentPort := testkit.TLSEcho(t, "127.0.0.2:0", ca.Issue(t, "api.azure.test", "other.azure.test")).Port()
	dnsPort, proxyPort := testkit.FreePort(t), testkit.FreePort(t)
	socket := filepath.Join(socketDir(t), "admin.sock")
	auditDir := filepath.Join(t.TempDir(), "audit")
	conf := writeConfig(t, socket, auditDir,
		"name   test-box", "level  3", fmt.Sprintf("dns    %d", dnsPort),
		fmt.Sprintf("proxy  %d:%d", proxyPort, parentPort), "parent 127.0.0.2",
		"allow {", "    *.azure.test", "}")
	cfg, err := config.Load(conf)
	if err != nil {
		t.Fatal(err)
	}
	rt, err := appliance.Start(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	defer func() {
		if !closed {
			rt.Close()
		}
	}()
	if _, err := os.Stat(socket); err != nil {
		t.Skipf("appliance.Start does not serve the admin socket yet: %v", err)
	}

	ask := func(name string) {
		t.Helper()
		m := new(dns.Msg).SetQuestion(dns.Fqdn(name), dns.TypeA)
		if r, err := dns.Exchange(m, fmt.Sprintf("127.0.0.1:%d", dnsPort)); err != nil || len(r.Answer) != 1 {
			t.Fatalf("query %s: %v %v", name, r, err)
		}
	}
	talk := func(sni string) {
		t.Helper()
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
	ask("api.azure.test")
	talk("api.azure.test")   // follows the query: linked
	talk("other.azure.test") // no query for it: unlinked, sni_mismatch

	// Close records arrive when the streams end.
	var stdout, stderr string
	deadline := time.Now().Add(5 * time.Second)
	for {
		var code int
		code, stdout, stderr = runCLI(t, "audit", "query", "--config", conf, "--json", "--kind", "conn")
		if code != 0 {
			t.Fatalf("audit query: exit %d\n%s", code, stderr)
		}
		if strings.Count(stdout, "\n") >= 4 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := strings.Count(stdout, "\n"); n != 4 {
		t.Fatalf("%d conn records, want 2 opens and 2 closes:\n%s", n, stdout)
	}

	t.Run("table", func(t *testing.T) {
		code, stdout, stderr := runCLI(t, "audit", "query", "--config", conf, "--since", "1h")
		if code != 0 || stderr != "" {
			t.Fatalf("exit %d\n%s", code, stderr)
		}
		t.Logf("lnm audit query:\n%s", stdout)
		q := lineWith(stdout, " dns ", "api.azure.test", "allow", "A NOERROR -> 127.0.0.1")
		if q == "" {
			t.Fatalf("no dns row for the query:\n%s", stdout)
		}
		seq := strings.Fields(q)[0]
		link := "query #" + seq + " A NOERROR -> 127.0.0.1 at "
		for _, event := range []string{"open", "close"} {
			if lineWith(stdout, " conn ", "api.azure.test", event+" id ", "via parent -> 127.0.0.2:", link) == "" {
				t.Errorf("no %s row linked to query %s:\n%s", event, seq, stdout)
			}
		}
		if l := lineWith(stdout, " conn ", "close id ", "api.azure.test"); !strings.Contains(l, " up ") || !strings.Contains(l, " down ") {
			t.Errorf("close row without bytes: %s", l)
		}
		other := lineWith(stdout, " conn ", "other.azure.test", "open [")
		if !strings.Contains(other, "unlinked") || !strings.Contains(other, "sni_mismatch") || strings.Contains(other, "query #") {
			t.Errorf("other.azure.test open row %q, want flags unlinked and sni_mismatch and no query", other)
		}
		if lineWith(stdout, " config ", "start ") == "" {
			t.Errorf("no start record:\n%s", stdout)
		}
	})

	t.Run("linked query fetched by seq", func(t *testing.T) {
		code, stdout, stderr := runCLI(t, "audit", "query", "--config", conf, "--kind", "conn", "--name", "api.azure.test")
		if code != 0 || stderr != "" {
			t.Fatalf("exit %d\n%s", code, stderr)
		}
		if strings.Contains(stdout, "(not found)") || lineWith(stdout, "open id ", "query #", "A NOERROR -> 127.0.0.1") == "" {
			t.Errorf("the linked query was not fetched:\n%s", stdout)
		}
	})

	t.Run("status", func(t *testing.T) {
		code, stdout, stderr := runCLI(t, "status", "--config", conf)
		if code != 0 || stderr != "" {
			t.Fatalf("exit %d\n%s", code, stderr)
		}
		for _, want := range []string{
			"box        test-box, level 3, enforce",
			fmt.Sprintf("parent     127.0.0.2:%d answers (rtt ", parentPort),
			fmt.Sprintf("127.0.0.1:%d", dnsPort),
			"audit      " + auditDir + ": healthy",
			"rules      1\n",
			"  api.azure.test ",
			"  127.0.0.1 ",
		} {
			if !strings.Contains(stdout, want) {
				t.Errorf("status lacks %q:\n%s", want, stdout)
			}
		}
		code, stdout, stderr = runCLI(t, "status", "--config", conf, "--json")
		var st adminapi.Status
		if err := json.Unmarshal([]byte(stdout), &st); code != 0 || err != nil {
			t.Fatalf("--json: exit %d, %v\n%s%s", code, err, stdout, stderr)
		}
		if st.Box != "test-box" || st.Counters.DNSQueries != 1 || st.Counters.Conns < 2 {
			t.Errorf("status document %+v", st)
		}
	})

	// follow sees a new query, then the box stops: exit 1.
	var out, errOut testkit.Buffer
	done := make(chan int, 1)
	go func() {
		done <- run([]string{"lnm", "audit", "follow", "--config", conf, "--kind", "dns"}, &out, &errOut)
	}()
	waitOutput(t, &out, "DETAIL")
	ask("follow.azure.test")
	waitOutput(t, &out, "follow.azure.test")
	if err := rt.Close(); err != nil {
		t.Fatal(err)
	}
	closed = true
	select {
	case code := <-done:
		if code != 1 || !strings.Contains(errOut.String(), "closed the stream") {
			t.Fatalf("follow: exit %d when the box stopped, want 1\n%s", code, errOut.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("follow did not end when the box stopped")
	}
	if lineWith(out.String(), " dns ", "follow.azure.test", "allow", "A NOERROR -> 127.0.0.1") == "" {
		t.Errorf("follow row:\n%s", out.String())
	}

	// The box is gone: the same query reads its log files and says so.
	t.Run("fallback to files", func(t *testing.T) {
		code, stdout, stderr := runCLI(t, "audit", "query", "--config", conf, "--kind", "dns", "--json")
		if code != 0 || !strings.Contains(stderr, "lnm is not running or not reachable at "+socket) ||
			!strings.Contains(stderr, "reading the audit log in "+auditDir) {
			t.Fatalf("exit %d\n%s", code, stderr)
		}
		var names []string
		for _, l := range strings.Split(strings.TrimSpace(stdout), "\n") {
			var r audit.Record
			if err := r.UnmarshalJSON([]byte(l)); err != nil {
				t.Fatalf("%q: %v", l, err)
			}
			names = append(names, r.Name)
		}
		if strings.Join(names, " ") != "api.azure.test follow.azure.test" {
			t.Errorf("dns records from the files: %q", names)
		}
		code, dirOut, stderr := runCLI(t, "audit", "query", "--dir", auditDir, "--kind", "dns", "--json")
		if code != 0 || stderr != "" || dirOut != stdout {
			t.Errorf("--dir: exit %d, %q\nwant %q\n%s", code, dirOut, stdout, stderr)
		}
	})
}
