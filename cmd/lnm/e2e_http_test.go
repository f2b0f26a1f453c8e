package main

import (
	"strings"
	"testing"
	"time"

	"github.com/lnm-project/lnm/audit"
)

// TestE2EHTTP: plain HTTP by Host on port 80 and an HTTP CONNECT proxy on 3128, with real
// clients (curl, wget, openssl) in the device's namespace, through the level-3 box and its
// parent at level 4, which decides again.
func TestE2EHTTP(t *testing.T) {
	start := time.Now()
	requireLab(t)
	bin := buildLNM(t)
	l := newLab(t)
	l.dumpLogsOnFailure()
	l.startInet()

	level3 := addDirectives(t, exampleConfig(t, "level3.conf"), "http 80", "connect 3128")
	level4 := addRule(t, exampleConfig(t, "level4.conf"), "opcua.vendor.test 443")
	level4 = addDirectives(t, level4, "children "+l3UpAddr, "http 80")
	l4 := l.startBox(bin, "l4", level4, l4DownAddr)
	l3 := l.startBox(bin, "l3", level3, l3DownAddr)
	alive := func(t *testing.T) {
		for _, p := range []*proc{l3, l4} {
			if done, err := p.exited(); done {
				t.Fatalf("%s exited: %v", p.name, err)
			}
		}
	}
	// record waits for a connection record on host's box that match accepts.
	record := func(t *testing.T, host, what string, match func(r audit.Record) bool) audit.Record {
		t.Helper()
		var got audit.Record
		if !waitFor(15*time.Second, func() bool {
			for _, r := range l.auditQuery(bin, host, "--kind", "conn") {
				if match(r) {
					got = r
					return true
				}
			}
			return false
		}) {
			t.Errorf("%s: no record of %s", host, what)
		}
		return got
	}
	proxy := "http://" + l3DownAddr + ":3128"
	// viaProxy runs curl through the box's connect port (l.curl turns proxies off).
	viaProxy := func(url string, extra ...string) (string, string, error) {
		args := append([]string{"-sS", "--max-time", "10", "--cacert", l.caFile, "--proxy", proxy}, extra...)
		return l.run("dev", "curl", append(args, url)...)
	}

	t.Run("http_through_both_boxes", func(t *testing.T) {
		body, errOut, err := l.curl("dev", "http://www.contoso.test/fw.bin")
		if err != nil {
			t.Fatalf("curl http://www.contoso.test/: %v\n%s", err, errOut)
		}
		for _, w := range []string{"http host=www.contoso.test ", "local=198.18.5.10:80", "remote=" + l4UpAddr + ":", "close=true"} {
			if !strings.Contains(body, w) {
				t.Errorf("body %q lacks %q", body, w)
			}
		}
		r3 := record(t, "l3", "the http close", func(r audit.Record) bool {
			return r.Event == audit.EventClose && r.Proto == "http" && r.SNI == "www.contoso.test"
		})
		if r3.Via != "parent" || r3.Upstream.String() != l4DownAddr+":80" || r3.Port != 80 || r3.QuerySeq == 0 || r3.BytesDown == 0 {
			t.Errorf("level-3 record %+v", r3)
		}
		r4 := record(t, "l4", "the http close", func(r audit.Record) bool {
			return r.Event == audit.EventClose && r.Proto == "http" && r.SNI == "www.contoso.test"
		})
		if r4.Via != "direct" || r4.Upstream.String() != "198.18.5.10:80" || r4.BytesDown != r3.BytesDown {
			t.Errorf("level-4 record %+v (level 3 carried %d bytes down)", r4, r3.BytesDown)
		}
		alive(t)
	})

	t.Run("http_denied_gets_403_with_explanation", func(t *testing.T) {
		body, errOut, err := l.curl("dev", "http://blocked.evil.test/", "--resolve", "blocked.evil.test:80:"+l3DownAddr,
			"-w", "\nstatus=%{http_code}")
		if err != nil {
			t.Fatalf("curl: %v\n%s", err, errOut)
		}
		for _, w := range []string{"status=403", "blocked.evil.test is denied (not_listed)", "add the rule: blocked.evil.test 80"} {
			if !strings.Contains(body, w) {
				t.Errorf("reply %q lacks %q", body, w)
			}
		}
		record(t, "l3", "the http deny", func(r audit.Record) bool {
			return r.Event == audit.EventDeny && r.Proto == "http" && r.SNI == "blocked.evil.test" && r.Reason == "not_listed"
		})
		// A request without a Host: 400.
		body, _, _ = l.run("dev", "curl", "-sS", "--noproxy", "*", "--max-time", "10", "-H", "Host:", "-w", "\nstatus=%{http_code}", "http://"+l3DownAddr+"/")
		if !strings.Contains(body, "status=400") || !strings.Contains(body, "no Host") {
			t.Errorf("request without Host: %q", body)
		}
		if seen := l.inetSeen(); strings.Contains(seen, "blocked.evil.test") {
			t.Errorf("the internet saw blocked.evil.test:\n%s", seen)
		}
		alive(t)
	})

	t.Run("connect_through_both_boxes", func(t *testing.T) {
		body, errOut, err := viaProxy("https://api.azure.test/proxied")
		if err != nil || !strings.Contains(body, "sni=api.azure.test ") || !strings.Contains(body, "remote="+l4UpAddr+":") {
			t.Fatalf("curl --proxy %s https://api.azure.test/ (certificate verified): %v\nbody: %s\nstderr: %s", proxy, err, body, errOut)
		}
		r3 := record(t, "l3", "the connect close", func(r audit.Record) bool {
			return r.Event == audit.EventClose && r.Proto == "connect" && r.SNI == "api.azure.test"
		})
		if r3.Port != 3128 || r3.Via != "parent" || r3.Upstream.String() != l4DownAddr+":443" {
			t.Errorf("level-3 record %+v", r3)
		}
		// Level 4 sees the tunnel as the TLS stream it carries, and decides on its SNI.
		r4 := record(t, "l4", "the tunnel's TLS close", func(r audit.Record) bool {
			return r.Event == audit.EventClose && r.Proto == "" && r.SNI == "api.azure.test" && r.Client.Addr().String() == l3UpAddr
		})
		if r4.Via != "direct" || r4.Upstream.String() != "198.18.5.11:443" {
			t.Errorf("level-4 record %+v", r4)
		}
		alive(t)
	})

	t.Run("wget_with_https_proxy", func(t *testing.T) {
		body, errOut, err := l.run("dev", "env", "https_proxy="+proxy+"/", "wget", "-q", "-O", "-",
			"--ca-certificate="+l.caFile, "https://www.contoso.test/wget")
		if err != nil || !strings.Contains(body, "sni=www.contoso.test ") {
			t.Fatalf("wget through https_proxy: %v\nbody: %s\nstderr: %s", err, body, errOut)
		}
		record(t, "l3", "wget's tunnel", func(r audit.Record) bool {
			return r.Event == audit.EventOpen && r.Proto == "connect" && r.SNI == "www.contoso.test"
		})
		alive(t)
	})

	t.Run("connect_refused", func(t *testing.T) {
		for _, tc := range []struct{ url, name, reason string }{
			{"https://blocked.evil.test/", "blocked.evil.test", "not_listed"},
			{"https://mqtt.vendor.test/", "mqtt.vendor.test", "port_not_allowed"}, // allowed on 8883 only
		} {
			body, errOut, err := viaProxy(tc.url)
			if err == nil || !strings.Contains(errOut, "403") {
				t.Errorf("curl --proxy %s %s: want the box's 403; got %v\nbody: %s\nstderr: %s", proxy, tc.url, err, body, errOut)
			}
			record(t, "l3", "the connect deny of "+tc.name, func(r audit.Record) bool {
				return r.Event == audit.EventDeny && r.Proto == "connect" && r.SNI == tc.name && r.Reason == tc.reason && r.Port == 3128
			})
		}
		if seen := l.inetSeen(); strings.Contains(seen, "blocked.evil.test") || strings.Contains(seen, "tls port=443 sni=mqtt.vendor.test") {
			t.Errorf("the internet saw a refused tunnel:\n%s", seen)
		}
		alive(t)
	})

	t.Run("connect_sni_mismatch", func(t *testing.T) {
		before := strings.Count(l.inetSeen(), "tls port=443 sni=api.azure.test")
		out, errOut, err := l.run("dev", "openssl", "s_client", "-proxy", l3DownAddr+":3128",
			"-connect", "www.contoso.test:443", "-servername", "api.azure.test", "-CAfile", l.caFile, "-verify_return_error")
		if err == nil && strings.Contains(out, "Verify return code: 0 (ok)") {
			t.Errorf("a tunnel for www.contoso.test carried a handshake for api.azure.test:\n%s", out)
		}
		t.Logf("openssl: %v; %s", err, strings.TrimSpace(errOut))
		record(t, "l3", "the sni_mismatch deny", func(r audit.Record) bool {
			return r.Event == audit.EventDeny && r.Proto == "connect" && r.SNI == "www.contoso.test" && r.Reason == "sni_mismatch"
		})
		if after := strings.Count(l.inetSeen(), "tls port=443 sni=api.azure.test"); after != before {
			t.Errorf("the internet saw the mismatched hello (%d hellos for api.azure.test before, %d after)", before, after)
		}
		alive(t)
	})

	t.Run("dev_cannot_reach_inet", func(t *testing.T) { l.checkIsolation(t) })
	t.Logf("TestE2EHTTP took %v", time.Since(start).Round(time.Millisecond))
}
