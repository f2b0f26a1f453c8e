package main

// End to end: the real lnm binary as the level-3 and level-4 boxes of the lab (lab_test.go),
// exercised by real clients from the device namespace. The configs are the repository's
// examples/level3.conf and examples/level4.conf, with the one change the test needs.

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lnm-project/lnm/allowlist"
	"github.com/lnm-project/lnm/audit"
)

// raceEnabled is set by race_test.go when the tests are built with -race.
var raceEnabled bool

// buildLNM builds cmd/lnm from the module root into the test's temporary directory, with
// the race detector when the tests have it.
func buildLNM(t *testing.T) string {
	t.Helper()
	root := moduleRoot(t)
	bin := filepath.Join(t.TempDir(), "lnm")
	args := []string{"build", "-o", bin}
	if raceEnabled {
		args = append(args, "-race")
	}
	c := exec.Command("go", append(args, "./cmd/lnm")...)
	c.Dir = root
	if out, err := c.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/lnm: %v\n%s", err, out)
	}
	return bin
}

func moduleRoot(t *testing.T) string {
	t.Helper()
	gomod, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil || strings.TrimSpace(string(gomod)) == "" || strings.TrimSpace(string(gomod)) == os.DevNull {
		t.Fatalf("go env GOMOD: %v (%q)", err, gomod)
	}
	return filepath.Dir(strings.TrimSpace(string(gomod)))
}

// exampleConfig returns examples/NAME from the module root: the boxes run the configs the
// repository ships, and a test states in code what it changes (addRule, addDirectives).
func exampleConfig(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(moduleRoot(t), "examples", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// addRule inserts rule as the first line of the config's allow block.
func addRule(t *testing.T, conf, rule string) string {
	t.Helper()
	var out strings.Builder
	done := false
	for line := range strings.Lines(conf) {
		out.WriteString(line)
		f := strings.Fields(line)
		if !done && len(f) >= 2 && f[0] == "allow" && f[1] == "{" {
			out.WriteString("        " + rule + "\n")
			done = true
		}
	}
	if !done {
		t.Fatalf("no `allow {` block in config:\n%s", conf)
	}
	return out.String()
}

// addDirectives inserts directives at the top of the lnm block.
func addDirectives(t *testing.T, conf string, directives ...string) string {
	t.Helper()
	var out strings.Builder
	done := false
	for line := range strings.Lines(conf) {
		out.WriteString(line)
		if f := strings.Fields(line); !done && len(f) >= 2 && f[0] == "lnm" && f[1] == "{" {
			for _, d := range directives {
				out.WriteString("    " + d + "\n")
			}
			done = true
		}
	}
	if !done {
		t.Fatalf("no `lnm {` block in config:\n%s", conf)
	}
	return out.String()
}

// auditQuery runs `lnm audit query --json` against a box's admin socket (a file: no network
// is involved) and returns the records.
func (l *lab) auditQuery(bin, host string, args ...string) []audit.Record {
	l.t.Helper()
	conf := filepath.Join(l.dir, host+".conf")
	out, err := exec.Command(bin, append([]string{"audit", "query", "--json", "--config", conf}, args...)...).Output()
	if err != nil {
		l.t.Fatalf("lnm audit query on %s: %v", host, err)
	}
	var recs []audit.Record
	for line := range strings.Lines(string(out)) {
		var r audit.Record
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			l.t.Fatalf("lnm audit query on %s printed %q: %v", host, line, err)
		}
		recs = append(recs, r)
	}
	return recs
}

// startBox checks and starts lnm inside the host's namespace and waits until its DNS and
// proxy ports are bound.
func (l *lab) startBox(bin, host, conf, listen string) *proc {
	l.t.Helper()
	return l.startBoxAs(bin, host, host, conf, listen)
}

// startBoxAs is startBox for a second box in one namespace: box names its config, admin
// socket and audit log in the test's directory (auditQuery takes it as the host).
func (l *lab) startBoxAs(bin, host, box, conf, listen string) *proc {
	l.t.Helper()
	// Each box keeps its admin socket and audit log in the test's directory, never in the
	// machine's /run/lnm and /var/lib/lnm.
	boxDir := filepath.Join(l.dir, box)
	conf = addDirectives(l.t, conf, "admin "+filepath.Join(boxDir, "admin.sock"), "audit "+filepath.Join(boxDir, "audit"))
	path := filepath.Join(l.dir, box+".conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		l.t.Fatal(err)
	}
	if out, err := exec.Command(bin, "check", "--config", path).CombinedOutput(); err != nil {
		l.t.Fatalf("lnm check --config %s: %v\n%s\nconfig:\n%s", path, err, out, conf)
	}
	p := l.start(host, "lnm-"+box, nil, bin, "--log-level", "debug", "--log-format", "json", "run", "--config", path)
	tcp := []string{listen + ":53", listen + ":443", listen + ":8883"}
	udp := []string{listen + ":53"}
	start := time.Now()
	ok := waitFor(15*time.Second, func() bool {
		if done, _ := p.exited(); done {
			return true
		}
		return l.listening(host, tcp, udp)
	})
	if done, err := p.exited(); done {
		l.t.Fatalf("lnm in %s exited during start-up: %v\n%s", host, err, readFile(p.log))
	}
	if !ok {
		l.t.Fatalf("lnm in %s not listening on %v (tcp) and %v (udp) within 15 s\n%s", host, tcp, udp, readFile(p.log))
	}
	l.t.Logf("lnm in %s ready in %v", host, time.Since(start).Round(time.Millisecond))
	return p
}

func TestE2E(t *testing.T) {
	start := time.Now()
	requireLab(t)
	bin := buildLNM(t)
	t.Logf("lnm built in %v (race detector: %v)", time.Since(start).Round(time.Millisecond), raceEnabled)

	l := newLab(t)
	l.dumpLogsOnFailure()
	l.startInet()

	level3 := exampleConfig(t, "level3.conf")
	// L4 decides again: the from-rule's name must be on its list too.
	level4 := addRule(t, exampleConfig(t, "level4.conf"), "opcua.vendor.test 443")
	// The level-3 box is level 4's child: its connections are linked at level 3.
	level4 = addDirectives(t, level4, "children "+l3UpAddr)
	l4 := l.startBox(bin, "l4", level4, l4DownAddr)
	l3 := l.startBox(bin, "l3", level3, l3DownAddr)
	t.Logf("lab and boxes up in %v", time.Since(start).Round(time.Millisecond))

	// alive fails the subtest when a box has died under it.
	alive := func(t *testing.T) {
		for _, p := range []*proc{l3, l4} {
			if done, err := p.exited(); done {
				t.Fatalf("%s exited: %v", p.name, err)
			}
		}
	}

	t.Run("dns", func(t *testing.T) {
		for _, server := range []string{"", l3DownAddr} {
			via := "resolv.conf"
			if server != "" {
				via = "@" + server
			}
			for _, name := range []string{"www.contoso.test", "contoso.test", "api.azure.test", "mqtt.vendor.test"} {
				r, out, err := l.dig("dev", server, name, "A")
				if err != nil || r.status != "NOERROR" || len(r.answers) != 1 || r.answers[0] != l3DownAddr || !r.aa {
					t.Errorf("%s A via %s: want NOERROR, aa, one answer %s; got %+v, %v\n%s", name, via, l3DownAddr, r, err, out)
				}
			}
			r, out, err := l.dig("dev", server, "blocked.evil.test", "A")
			if err != nil || r.status != "NXDOMAIN" {
				t.Errorf("blocked.evil.test via %s: want NXDOMAIN; got %+v, %v\n%s", via, r, err, out)
			}
			r, out, err = l.dig("dev", server, "azure.test", "A")
			if err != nil || r.status != "NOERROR" || len(r.answers) != 0 {
				t.Errorf("azure.test via %s: want NODATA (NOERROR, no answer); got %+v, %v\n%s", via, r, err, out)
			}
		}
		// The level-4 box answers with its own address to the level-3 box.
		r, out, err := l.dig("l3", l4DownAddr, "www.contoso.test", "A")
		if err != nil || len(r.answers) != 1 || r.answers[0] != l4DownAddr {
			t.Errorf("www.contoso.test @%s from l3: want %s; got %+v, %v\n%s", l4DownAddr, l4DownAddr, r, err, out)
		}
		alive(t)
	})

	t.Run("https_through_both_boxes", func(t *testing.T) {
		for _, n := range inetNames[:3] { // www.contoso.test, contoso.test, api.azure.test
			body, errOut, err := l.curl("dev", "https://"+n.name+"/")
			want := []string{"sni=" + n.name + " ", "local=" + n.addr + ":443", "remote=" + l4UpAddr + ":"}
			if err != nil {
				t.Errorf("curl https://%s/ from dev: %v\n%s", n.name, err, errOut)
				continue
			}
			for _, w := range want {
				if !strings.Contains(body, w) {
					t.Errorf("curl https://%s/ from dev: body %q lacks %q", n.name, body, w)
				}
			}
		}
		// The top box resolved the name itself, through its upstream.
		if seen := l.inetSeen(); !strings.Contains(seen, "dns name=www.contoso.test type=A remote="+l4UpAddr+":") {
			t.Errorf("the internet's DNS never got www.contoso.test from the level-4 box:\n%s", seen)
		}
		alive(t)
	})

	t.Run("audit_links_query_to_connection", func(t *testing.T) {
		// A fresh query and connection, then both boxes' records of them.
		if r, out, err := l.dig("dev", "", "www.contoso.test", "A"); err != nil || len(r.answers) != 1 {
			t.Fatalf("dig: %+v %v\n%s", r, err, out)
		}
		if _, errOut, err := l.curl("dev", "https://www.contoso.test/audit-probe"); err != nil {
			t.Fatalf("curl: %v\n%s", err, errOut)
		}
		var l3Query, l3Close, l4Close audit.Record
		ok := waitFor(5*time.Second, func() bool {
			l3Query, l3Close = audit.Record{}, audit.Record{}
			for _, r := range l.auditQuery(bin, "l3", "--client", devAddr, "--name", "www.contoso.test") {
				switch {
				case r.Kind == audit.KindDNS && r.QType == "A":
					l3Query = r
				case r.Kind == audit.KindConn && r.Event == audit.EventClose:
					l3Close = r
				}
			}
			l4Close = audit.Record{}
			for _, r := range l.auditQuery(bin, "l4", "--client", l3UpAddr, "--name", "www.contoso.test", "--kind", "conn") {
				if r.Event == audit.EventClose {
					l4Close = r
				}
			}
			return l3Close.Seq != 0 && l4Close.Seq != 0 && l3Close.QuerySeq == l3Query.Seq
		})
		if !ok {
			t.Fatalf("level 3: query %+v\nclose %+v\nlevel 4: close %+v", l3Query, l3Close, l4Close)
		}
		if l3Close.Via != "parent" || l3Close.Upstream.String() != l4DownAddr+":443" || l3Close.HasFlag(audit.FlagUnlinked) {
			t.Errorf("level-3 close %+v", l3Close)
		}
		// The same TLS stream crossed both boxes: the byte counts agree.
		if l3Close.BytesDown == 0 || l3Close.BytesUp != l4Close.BytesUp || l3Close.BytesDown != l4Close.BytesDown {
			t.Errorf("bytes: level 3 up %d down %d, level 4 up %d down %d", l3Close.BytesUp, l3Close.BytesDown, l4Close.BytesUp, l4Close.BytesDown)
		}
		if l4Close.Via != "direct" || l4Close.Upstream.Addr().String() != inetNames[0].addr || len(l4Close.Flags) != 0 {
			t.Errorf("level-4 close %+v", l4Close)
		}
		alive(t)
	})

	t.Run("mqtt_on_8883", func(t *testing.T) {
		out, errOut, err := l.run("dev", "openssl", "s_client", "-connect", "mqtt.vendor.test:8883",
			"-servername", "mqtt.vendor.test", "-CAfile", l.caFile, "-verify_return_error")
		if err != nil || !strings.Contains(out, "Verify return code: 0 (ok)") {
			t.Errorf("openssl s_client mqtt.vendor.test:8883 from dev: %v\n%s\n%s", err, out, errOut)
		}
		_, errOut, err = l.run("dev", "mosquitto_pub", "-h", "mqtt.vendor.test", "-p", "8883",
			"--cafile", l.caFile, "-t", "lnm/e2e", "-m", "through-two-boxes")
		if err != nil {
			t.Errorf("mosquitto_pub over TLS from dev: %v\n%s", err, errOut)
		} else if !l.waitSeen(`topic=lnm/e2e payload="through-two-boxes"`) {
			t.Errorf("the broker never got the message:\n%s", l.inetSeen())
		}
		alive(t)
	})

	t.Run("mqtt_refused_on_443", func(t *testing.T) {
		body, errOut, err := l.curl("dev", "https://mqtt.vendor.test/")
		if err == nil {
			t.Fatalf("mqtt.vendor.test on 443 was let through: %s", body)
		}
		checkDenied(t, errOut)
		checkDenyLogged(t, l3, "mqtt.vendor.test", 443, allowlist.ReasonPortNotAllowed)
		if seen := l.inetSeen(); strings.Contains(seen, "tls port=443 sni=mqtt.vendor.test") {
			t.Errorf("the internet saw mqtt.vendor.test on 443:\n%s", seen)
		}
		alive(t)
	})

	t.Run("denied_name_forced", func(t *testing.T) {
		body, errOut, err := l.curl("dev", "https://blocked.evil.test/", "--resolve", "blocked.evil.test:443:"+l3DownAddr)
		if err == nil {
			t.Fatalf("blocked.evil.test was let through: %s", body)
		}
		checkDenied(t, errOut)
		checkDenyLogged(t, l3, "blocked.evil.test", 443, allowlist.ReasonNotListed)
		if n := strings.Count(l.inetSeen(), "blocked.evil.test"); n != 0 {
			t.Errorf("the internet saw blocked.evil.test %d times:\n%s", n, l.inetSeen())
		}
		alive(t)
	})

	t.Run("level4_decides_again", func(t *testing.T) {
		// Straight to the level-4 box from the level-3 namespace, as a misconfigured
		// level-3 box would: the top box refuses on its own list.
		body, errOut, err := l.curl("l3", "https://blocked.evil.test/", "--resolve", "blocked.evil.test:443:"+l4DownAddr)
		if err == nil {
			t.Fatalf("level-4 box let blocked.evil.test through: %s", body)
		}
		checkDenied(t, errOut)
		checkDenyLogged(t, l4, "blocked.evil.test", 443, allowlist.ReasonNotListed)
		if seen := l.inetSeen(); strings.Contains(seen, "blocked.evil.test") {
			t.Errorf("the internet saw blocked.evil.test:\n%s", seen)
		}
		alive(t)
	})

	t.Run("from_rule", func(t *testing.T) {
		body, errOut, err := l.curl("dev", "https://opcua.vendor.test/", "--interface", devAddr)
		if err != nil || !strings.Contains(body, "sni=opcua.vendor.test ") {
			t.Errorf("opcua.vendor.test from %s (admitted by `from`): %v\nbody: %s\nstderr: %s", devAddr, err, body, errOut)
		}
		body, errOut, err = l.curl("dev", "https://opcua.vendor.test/", "--interface", devAddr2,
			"--resolve", "opcua.vendor.test:443:"+l3DownAddr)
		if err == nil {
			t.Errorf("opcua.vendor.test from %s was let through: %s", devAddr2, body)
		} else {
			checkDenied(t, errOut)
			checkDenyLogged(t, l3, "opcua.vendor.test", 443, allowlist.ReasonFromMismatch)
		}
		if n := strings.Count(l.inetSeen(), "tls port=443 sni=opcua.vendor.test"); n != 1 {
			t.Errorf("the internet saw %d hellos for opcua.vendor.test, want 1:\n%s", n, l.inetSeen())
		}
		alive(t)
	})

	t.Run("dev_cannot_reach_inet", func(t *testing.T) { l.checkIsolation(t) })

	t.Logf("TestE2E took %v", time.Since(start).Round(time.Millisecond))
}

// checkDenied asserts a client's error is the box's refusal: the TLS alert access_denied
// the issue asks for.
func checkDenied(t *testing.T, clientErr string) {
	t.Helper()
	if !strings.Contains(clientErr, "access denied") {
		t.Errorf("want a TLS access_denied alert from the box; the client said: %s", strings.TrimSpace(clientErr))
	}
}

// checkDenyLogged asserts the box logged its denial of sni on port with the given reason
// (the forwarder's JSON log: msg "conn deny", fields sni, port, reason). The line may be
// written just after the client saw the alert, so it is polled for briefly.
func checkDenyLogged(t *testing.T, box *proc, sni string, port int, reason allowlist.Reason) {
	t.Helper()
	var got []string
	found := waitFor(2*time.Second, func() bool {
		got = got[:0]
		for line := range strings.Lines(readFile(box.log)) {
			var e struct {
				Msg    string  `json:"msg"`
				SNI    string  `json:"sni"`
				Port   float64 `json:"port"`
				Reason string  `json:"reason"`
			}
			if json.Unmarshal([]byte(line), &e) != nil || e.Msg != "conn deny" || e.SNI != sni || int(e.Port) != port {
				continue
			}
			if e.Reason == string(reason) {
				return true
			}
			got = append(got, e.Reason)
		}
		return false
	})
	if !found {
		t.Errorf("%s: no `conn deny` log line for sni=%s port=%d reason=%s (reasons logged for it: %v)", box.name, sni, port, reason, got)
	}
}
