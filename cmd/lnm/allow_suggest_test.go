package main

import (
	"encoding/json"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lnm-project/lnm/allowfile"
	"github.com/lnm-project/lnm/appliance"
	"github.com/lnm-project/lnm/audit"
	"github.com/lnm-project/lnm/internal/testkit"
)

// learnRecords are a morning of learn mode at a level-3 box, relative to testNow, with one
// denial from before the default --since 7d.
func learnRecords() []audit.Record {
	var recs []audit.Record
	ago := func(d time.Duration) time.Time { return testNow.Add(-d) }
	dnsRec := func(when time.Time, client netip.Addr, name, verdict, reason string) {
		recs = append(recs, audit.Record{Time: when, Box: "l3-plant", Level: 3, Kind: audit.KindDNS,
			Client: netip.AddrPortFrom(client, 0), Name: name, QType: "A", Verdict: verdict, Reason: reason, Rcode: "NOERROR"})
	}
	connRec := func(when time.Time, client netip.Addr, sni string, port uint16, verdict string) {
		recs = append(recs, audit.Record{Time: when, Box: "l3-plant", Level: 3, Kind: audit.KindConn,
			Client: netip.AddrPortFrom(client, 40000), Event: audit.EventOpen, ID: uint64(len(recs) + 1), Port: port, SNI: sni,
			Verdict: verdict, Reason: "not_listed"})
	}
	wd := audit.VerdictWouldDeny
	dnsRec(ago(30*24*time.Hour), device, "old.vendor.test", audit.VerdictDeny, "not_listed")
	for i, n := range []string{"a", "b", "c"} {
		name := n + ".blob.vendor.test"
		dnsRec(ago(time.Duration(90-i)*time.Minute), device, name, wd, "not_listed")
		connRec(ago(time.Duration(90-i)*time.Minute), device, name, 443, wd)
	}
	dnsRec(ago(80*time.Minute), device, "telemetry.vendor.test", wd, "not_listed")
	connRec(ago(80*time.Minute), device, "telemetry.vendor.test", 8883, wd)
	dnsRec(ago(70*time.Minute), device2, "telemetry.vendor.test", audit.VerdictDeny, "not_listed")
	dnsRec(ago(60*time.Minute), device2, "login.azure.test", audit.VerdictAllow, "listed")
	return recs
}

// TestAllowSuggestDir reads a copied audit log: proposals, collapsed, as a table and JSON.
func TestAllowSuggestDir(t *testing.T) {
	fixClock(t)
	dir := t.TempDir()
	writeLog(t, dir, learnRecords())
	code, stdout, stderr := runCLI(t, "allow", "suggest", "--dir", dir, "--collapse", "3")
	if code != 0 || stderr != "" {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	testkit.Golden(t, "testdata/allow_suggest.golden", stdout)

	code, stdout, stderr = runCLI(t, "allow", "suggest", "--dir", dir, "--json", "--client", device2.String())
	if code != 0 || stderr != "" {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(stdout), &got); err != nil || strings.Count(stdout, "\n") != 1 {
		t.Fatalf("want one JSON line: %v\n%s", err, stdout)
	}
	if got["rule"] != "telemetry.vendor.test from 198.18.3.21/32" || got["dns"] != 1.0 || got["conns"] != 0.0 {
		t.Errorf("suggestion for one device: %v", got)
	}

	code, stdout, _ = runCLI(t, "allow", "suggest", "--dir", dir, "--since", "31d")
	if code != 0 || !strings.Contains(stdout, "old.vendor.test ") {
		t.Errorf("--since 31d leaves out the old denial:\n%s", stdout)
	}
	code, stdout, _ = runCLI(t, "allow", "suggest", "--dir", dir, "--since", "1m")
	if code != 0 || !strings.HasPrefix(stdout, "nothing to suggest: no denied name since 2026-03-01 10:29:00.000 (0 deny and would-deny records)") {
		t.Errorf("exit %d\n%s", code, stdout)
	}
}

// TestAllowSuggestApply adds the proposals to a box's managed file, skipping names the list
// allows now: a second run has nothing left to add.
func TestAllowSuggestApply(t *testing.T) {
	fixClock(t)
	dir := t.TempDir()
	writeLog(t, dir, learnRecords())
	conf := writeConfig(t, filepath.Join(socketDir(t), "admin.sock"), dir, "proxy 443 8883",
		"allow {", "    a.blob.vendor.test", "}")
	code, stdout, stderr := runCLI(t, "allow", "suggest", "--config", conf, "--apply")
	if code != 0 || !strings.Contains(stderr, "lnm is not running") || !strings.Contains(stderr, "edited the file directly") {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	mpath := allowfile.PathFor(conf)
	for _, want := range []string{
		"added telemetry.vendor.test 8883 (" + mpath + ":6)\n",
		"added b.blob.vendor.test 443 (" + mpath + ":9)\n",
		"added c.blob.vendor.test 443 (" + mpath + ":12)\n",
		"wrote " + mpath + ": 4 rules",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, stdout)
		}
	}
	if strings.Contains(stdout, "added a.blob") {
		t.Errorf("suggested a name the list allows:\n%s", stdout)
	}
	list, err := appliance.LoadAllowList(conf)
	if err != nil {
		t.Fatal(err)
	}
	var note string
	for _, r := range list.Rules {
		if r.Rule == "telemetry.vendor.test 8883" {
			note = strings.Join(r.Note, "\n")
		}
	}
	if !strings.Contains(note, ": suggested from 3 records by 2 devices, 2026-03-01T08:10:00Z to 2026-03-01T08:20:00Z") {
		t.Errorf("note of the applied rule: %q", note)
	}
	code, stdout, stderr = runCLI(t, "allow", "suggest", "--config", conf, "--apply")
	if code != 0 || !strings.HasPrefix(stdout, "nothing to suggest") {
		t.Errorf("second run: exit %d\n%s%s", code, stdout, stderr)
	}
}

// TestAllowSuggestBox asks the box for both verdicts, with --since and --client.
func TestAllowSuggestBox(t *testing.T) {
	fixClock(t)
	fb := startFakeBox(t, &fakeBox{records: learnRecords()})
	conf := writeConfig(t, fb.socket, "off", "proxy 443 8883")
	code, stdout, stderr := runCLI(t, "allow", "suggest", "--config", conf, "--client", "198.18.3.0/24", "--since", "2h")
	if code != 0 || stderr != "" || !strings.Contains(stdout, "4 proposals from 9 deny and would-deny records since 2026-03-01 08:30:00.000") {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	want := []string{
		"client=198.18.3.0%2F24&since=2026-03-01T07%3A30%3A00Z&verdict=would-deny",
		"client=198.18.3.0%2F24&since=2026-03-01T07%3A30%3A00Z&verdict=deny",
	}
	if got := fb.requests(); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("requests\n got %q\nwant %q", got, want)
	}
}

func TestAllowSuggestBadFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--since", "yesterday"}, `--since "yesterday": want a duration`},
		{[]string{"--client", "plc"}, `--client "plc": want an address or CIDR`},
		{[]string{"--collapse", "-2"}, "--collapse -2: want 0 (never) or more"},
		{[]string{"--collapse", "1"}, "--collapse 1 would make *.PARENT of every single name"},
		{[]string{"extra"}, `allow suggest takes no arguments, got ["extra"]`},
	} {
		code, _, stderr := runCLI(t, append([]string{"allow", "suggest", "--dir", t.TempDir()}, tc.args...)...)
		if code != 2 || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: exit %d\n%s\nwant %s", tc.args, code, stderr, tc.want)
		}
	}
}
