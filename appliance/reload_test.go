package appliance

import (
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/lnm-project/lnm/adminapi"
	"github.com/lnm-project/lnm/audit"
	"github.com/lnm-project/lnm/config"
	"github.com/lnm-project/lnm/internal/testkit"
)

// echoStreamTLS serves TLS on addr and echoes every byte back until the client closes.
func echoStreamTLS(t *testing.T, addr string, cert tls.Certificate) int {
	t.Helper()
	srv := testkit.ServeTLS(t, addr, &tls.Config{Certificates: []tls.Certificate{cert}}, func(c *tls.Conn) { io.Copy(c, c) })
	return int(srv.Port())
}

// box is a runtime on loopback with a TLS echo server as its parent, and what its tests
// look at: the logger's output and the admin API.
type box struct {
	rt        *Runtime
	dir       string
	log       *testkit.Buffer
	pool      *tls.Config
	dnsPort   int
	proxyPort int
	backend   int
}

// startBox parses and validates the config that text makes of the box's ports and
// directory (see boxConfig), and starts it.
func startBox(t *testing.T, listen string, text func(b *box) string) *box {
	t.Helper()
	ca := testkit.NewCA(t)
	b := &box{dir: t.TempDir(), log: &testkit.Buffer{}, pool: ca.Client("")}
	b.backend = echoStreamTLS(t, "127.0.0.2:0", ca.Issue(t, "api.azure.test"))
	b.dnsPort, b.proxyPort = int(testkit.FreePort(t)), int(testkit.FreePort(t))
	cfg := b.config(t, listen, text(b))
	rt, err := Start(cfg, slog.New(slog.NewTextHandler(b.log, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close() })
	b.rt = rt
	return b
}

// config parses and validates an lnm block listening on listen with the box's ports,
// parent, admin socket and audit log, and extra directives.
func (b *box) config(t *testing.T, listen, extra string) *config.Config {
	t.Helper()
	text := fmt.Sprintf(`lnm {
    listen %s
    dns    %d
    proxy  %d:%d
    parent 127.0.0.2
    admin  %s/admin.sock
    audit  %s/audit
%s
}
`, listen, b.dnsPort, b.proxyPort, b.backend, b.dir, b.dir, extra)
	cfg, err := config.Parse(filepath.Join(b.dir, "lnm.conf"), strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("the test's config must pass Validate: %v", err)
	}
	return cfg
}

// stream opens a TLS stream to sni through the box's proxy port and checks it works.
func (b *box) stream(t *testing.T, sni string) *tls.Conn {
	t.Helper()
	conf := b.pool.Clone()
	conf.ServerName = sni
	c, err := tls.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", b.proxyPort), conf)
	if err != nil {
		t.Fatalf("stream to %s: %v", sni, err)
	}
	t.Cleanup(func() { c.Close() })
	flows(t, c, "hello")
	return c
}

// flows sends msg up a stream and checks that the echo comes back down.
func flows(t *testing.T, c *tls.Conn, msg string) {
	t.Helper()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	defer c.SetDeadline(time.Time{})
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatalf("stream: write %q: %v", msg, err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != msg {
		t.Fatalf("stream: read %q, %v; want the echo of %q", buf, err, msg)
	}
}

// ask sends an A question for name to the box's DNS port on 127.0.0.1 and returns the rcode
// and the number of answers.
func (b *box) ask(t *testing.T, name string) (rcode, answers int) {
	t.Helper()
	r, err := dns.Exchange(new(dns.Msg).SetQuestion(name, dns.TypeA), fmt.Sprintf("127.0.0.1:%d", b.dnsPort))
	if err != nil {
		t.Fatalf("query %s: %v", name, err)
	}
	return r.Rcode, len(r.Answer)
}

// configRecords waits until the audit trail holds at least n config records and returns them.
func (b *box) configRecords(t *testing.T, n int) []audit.Record {
	t.Helper()
	api := adminClient(filepath.Join(b.dir, "admin.sock"))
	deadline := time.Now().Add(5 * time.Second)
	for {
		recs := getRecords(t, api, adminapi.Query{Filter: audit.Filter{Kind: audit.KindConfig}})
		if len(recs) >= n || time.Now().After(deadline) {
			return recs
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestReloadRefusedKeepsServing reloads a config whose list no longer allows a live spliced
// stream and which a component prepared after the stream's forwarder refuses. The reload
// must change nothing: the stream keeps flowing both ways, DNS keeps answering from the old
// list, and the refusal is in the log and in the audit trail.
func TestReloadRefusedKeepsServing(t *testing.T) {
	for _, tc := range []struct {
		name   string
		listen string
		// next returns the directives of the refused config, and a check of what the
		// refusal left behind (nil: none).
		next func(t *testing.T, b *box) (string, func(*testing.T))
		want string // in the error, the log line and the audit record
	}{
		{
			// Validate judges "itself" by address family, but a DNS server on :: hears
			// IPv4 too: only the resolver, which knows its sockets, sees the loop.
			name:   "resolver",
			listen: "::",
			next: func(t *testing.T, b *box) (string, func(*testing.T)) {
				return fmt.Sprintf("    allow {\n        historian.contoso.test\n    }\n    zone plant.test {\n        forward 127.0.0.1:%d\n    }", b.dnsPort), nil
			},
			want: "resolver: stub zone plant.test forwards to 127.0.0.1:",
		},
		{
			// The forwarder on 127.0.0.1 binds the added port, and must release it again;
			// the one on ::1 cannot bind it.
			name:   "forwarder",
			listen: "127.0.0.1 ::1",
			next: func(t *testing.T, b *box) (string, func(*testing.T)) {
				busy, err := net.Listen("tcp", "[::1]:0")
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { busy.Close() })
				port := busy.Addr().(*net.TCPAddr).Port
				free := func(t *testing.T) {
					t.Helper()
					ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
					if err != nil {
						t.Fatalf("the added port is not free on 127.0.0.1: %v", err)
					}
					ln.Close()
				}
				free(t)
				return fmt.Sprintf("    tcp %d 127.0.0.2:%d\n    allow {\n        historian.contoso.test\n    }", port, b.backend), free
			},
			want: "forwarder: listen on [::1]:",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			oldRules := "    allow {\n        *.azure.test\n    }"
			b := startBox(t, tc.listen, func(*box) string { return oldRules })
			live := b.stream(t, "api.azure.test")
			hash := listHash(b.rt.currentList())

			text, check := tc.next(t, b)
			next := b.config(t, tc.listen, text)
			err := b.rt.Reload(next, Caller{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Reload: %v, want an error containing %q", err, tc.want)
			}
			if check != nil {
				check(t)
			}

			flows(t, live, "still there")
			flows(t, b.stream(t, "api.azure.test"), "new stream")
			if rcode, n := b.ask(t, "api.azure.test."); rcode != dns.RcodeSuccess || n != 1 {
				t.Errorf("old allowed name: rcode %s, %d answers; want the old list's answer", dns.RcodeToString[rcode], n)
			}
			if rcode, _ := b.ask(t, "historian.contoso.test."); rcode != dns.RcodeNameError {
				t.Errorf("name only the refused list allows: rcode %s, want NXDOMAIN", dns.RcodeToString[rcode])
			}
			if got := b.rt.config(); got == next {
				t.Error("the refused config became the running one")
			}
			if got := listHash(b.rt.currentList()); got != hash {
				t.Errorf("list hash %s after the refusal, want %s", got, hash)
			}

			if log := b.log.String(); !strings.Contains(log, "reload refused") || !strings.Contains(log, tc.want) {
				t.Errorf("log lacks the refusal naming %q:\n%s", tc.want, log)
			}
			recs := b.configRecords(t, 2) // start, then the refusal
			last := recs[len(recs)-1]
			if !strings.HasPrefix(last.Change, "reload-failed "+next.File+": ") || !strings.Contains(last.Change, tc.want) ||
				last.Hash != hash || last.UID != nil {
				t.Errorf("last config record %+v, want reload-failed naming %q with the old hash %s", last, tc.want, hash)
			}
		})
	}
}

// TestReloadUnchanged: a reload whose config equals the running one touches nothing and
// records that; one that differs swaps the data path's plan.
func TestReloadUnchanged(t *testing.T) {
	rules := "    allow {\n        *.azure.test\n    }"
	for _, tc := range []struct {
		name      string
		extra     string // directives of the reloaded config
		unchanged bool
		change    string // the config record's change after "reload FILE "
	}{
		{"same file parsed again", rules, true, "(unchanged)"},
		{"one more rule", rules + "\n    allow {\n        historian.contoso.test\n    }", false, "(+historian.contoso.test)"},
		{"mode learn", rules + "\n    mode learn", false, "(rules unchanged)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := startBox(t, "127.0.0.1", func(*box) string { return rules })
			live := b.stream(t, "api.azure.test")
			b.rt.mu.Lock()
			plan := b.rt.current
			b.rt.mu.Unlock()

			next := b.config(t, "127.0.0.1", tc.extra)
			if err := b.rt.Reload(next, Caller{}); err != nil {
				t.Fatal(err)
			}
			b.rt.mu.Lock()
			replaced, running := b.rt.current != plan, b.rt.cfg == next
			b.rt.mu.Unlock()
			if replaced == tc.unchanged || running == tc.unchanged {
				t.Errorf("plan replaced %v, next running %v; want %v", replaced, running, !tc.unchanged)
			}
			flows(t, live, "untouched")
			recs := b.configRecords(t, 2)
			if last := recs[len(recs)-1]; last.Change != "reload "+next.File+" "+tc.change {
				t.Errorf("last config record %q, want %q", last.Change, "reload "+next.File+" "+tc.change)
			}
			wantLog := "reloaded"
			if tc.unchanged {
				wantLog = "configuration unchanged; nothing touched"
			}
			if log := b.log.String(); !strings.Contains(log, wantLog) {
				t.Errorf("log lacks %q:\n%s", wantLog, log)
			}
			api := adminClient(filepath.Join(b.dir, "admin.sock"))
			for _, r := range getRecords(t, api, adminapi.Query{Filter: audit.Filter{Kind: audit.KindConn}}) {
				if r.Event == audit.EventClose {
					t.Errorf("a stream was closed by the reload: %+v", r)
				}
			}
		})
	}
}

// Asking for the running mode touches nothing and is recorded as unchanged.
func TestSetLearnUnchanged(t *testing.T) {
	b := startBox(t, "127.0.0.1", func(*box) string { return "    allow {\n        *.azure.test\n    }" })
	b.rt.mu.Lock()
	plan := b.rt.current
	b.rt.mu.Unlock()
	if err := b.rt.SetLearn(false, Caller{}); err != nil {
		t.Fatal(err)
	}
	b.rt.mu.Lock()
	same := b.rt.current == plan
	b.rt.mu.Unlock()
	if !same {
		t.Error("asking for the running mode replaced the plan")
	}
	if recs := b.configRecords(t, 2); recs[len(recs)-1].Change != "mode enforce (unchanged)" {
		t.Errorf("last config record %+v, want mode enforce (unchanged)", recs[len(recs)-1])
	}
}
