package main

import (
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lnm-project/lnm/audit"
)

// TestAuditTrace runs `lnm audit trace` over two box logs written as the boxes would, without
// the lab: the answer, the --json form, and every way to ask wrongly.
func TestAuditTrace(t *testing.T) {
	at := time.Now().UTC().Add(-time.Minute).Truncate(time.Millisecond)
	dev := netip.MustParseAddrPort("198.18.3.20:40312")
	conn := func(box string, ev string, id uint64, d time.Duration, client netip.AddrPort, o *audit.Origin) audit.Record {
		return audit.Record{Time: at.Add(d), Box: box, Kind: audit.KindConn, Event: ev, ID: id, Client: client,
			Port: 443, SNI: "www.contoso.test", Verdict: audit.VerdictAllow, Origin: o}
	}
	l3, l4 := filepath.Join(t.TempDir(), "l3"), filepath.Join(t.TempDir(), "l4")
	writeLog(t, l3, []audit.Record{
		conn("l3-gw", audit.EventOpen, 4, 0, dev, nil),
		conn("l3-gw", audit.EventClose, 4, time.Second, dev, nil),
	})
	child := netip.MustParseAddrPort("198.18.4.3:51022")
	origin := &audit.Origin{Device: dev, Path: []string{"l3-gw"}, ID: 4}
	writeLog(t, l4, []audit.Record{
		{Time: at, Box: "l4-site", Kind: audit.KindDNS, Name: "www.contoso.test"},
		conn("l4-site", audit.EventOpen, 17, 5*time.Millisecond, child, origin),
	})

	code, out, errOut := runCLI(t, "audit", "trace", "--dir", l4, "--dir", l3, "2")
	if code != 0 || !strings.HasPrefix(out, "device "+dev.String()+"\n") {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 5 || !strings.Contains(lines[2], "l3-gw") || !strings.Contains(lines[3], "l3-gw") ||
		!strings.Contains(lines[4], "l4-site") || !strings.Contains(lines[4], "origin "+dev.String()+" via l3-gw id 4") {
		t.Errorf("trace table:\n%s", out)
	}
	code, out, _ = runCLI(t, "audit", "trace", "--json", "--dir", l4, "--dir", l3, "2")
	if code != 0 || strings.Count(out, "\n") != 3 || !strings.HasPrefix(out, `{"seq":1,`) {
		t.Errorf("--json: exit %d\n%s", code, out)
	}
	code, out, _ = runCLI(t, "audit", "trace", "--dir", l4, "2")
	if code != 0 || !strings.Contains(out, "l3-gw") || !strings.Contains(out, "not in the logs given (its id 4)") {
		t.Errorf("without the child's log: exit %d\n%s", code, out)
	}

	for _, c := range []struct {
		name   string
		args   []string
		code   int
		stderr string
	}{
		{"no seq", []string{"--dir", l4}, 2, "one argument"},
		{"not a number", []string{"--dir", l4, "x"}, 2, `"x"`},
		{"no dir", []string{"2"}, 2, "dir"},
		{"not there", []string{"--dir", l4, "9"}, 1, "no conn record with seq 9"},
		{"a dns record", []string{"--dir", l4, "1"}, 1, "no conn record with seq 1"},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, _, errOut := runCLI(t, append([]string{"audit", "trace"}, c.args...)...)
			if code != c.code || !strings.Contains(errOut, c.stderr) {
				t.Errorf("exit %d, stderr %q; want %d and %q", code, errOut, c.code, c.stderr)
			}
		})
	}
}
