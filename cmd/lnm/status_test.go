package main

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lnm-project/lnm/adminapi"
	"github.com/lnm-project/lnm/internal/auditview"
	"github.com/lnm-project/lnm/internal/testkit"
)

func TestStatusFromBox(t *testing.T) {
	fixClock(t)
	fb := startFakeBox(t, &fakeBox{status: sampleStatus()})
	conf := writeConfig(t, fb.socket, "off")

	code, stdout, stderr := runCLI(t, "status", "--config", conf)
	if code != 0 || stderr != "" {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	testkit.Golden(t, "testdata/status.golden", stdout)

	code, stdout, stderr = runCLI(t, "status", "--config", conf, "--json")
	if code != 0 || stderr != "" {
		t.Fatalf("--json: exit %d\n%s", code, stderr)
	}
	want, _ := json.Marshal(sampleStatus())
	if stdout != string(want)+"\n" {
		t.Errorf("--json printed\n%s\nwant the document as sent\n%s", stdout, want)
	}
}

func TestStatusRenderFailing(t *testing.T) {
	st := sampleStatus()
	st.Box, st.Level, st.UptimeS = "l4-dmz", 4, 3*86400+7200+5
	st.Parent = &adminapi.ParentStatus{Addr: "198.18.5.1:443", Error: "dial tcp 198.18.5.1:443: connect: connection refused"}
	st.Listeners = nil
	st.TopClients, st.TopNames = nil, nil
	st.Audit = adminapi.AuditStatus{Dir: "/var/lib/lnm/audit", Error: "audit: write audit-00000000000000000001.jsonl: no space left on device",
		Queue: 10000, LastSeq: 99, Written: 98, Refused: 1234}
	st.Store = adminapi.StoreStatus{}
	var b bytes.Buffer
	if err := auditview.WriteStatus(&b, &st, testZone); err != nil {
		t.Fatal(err)
	}
	testkit.Golden(t, "testdata/status_failing.golden", b.String())

	st.Parent, st.Audit = nil, adminapi.AuditStatus{}
	b.Reset()
	auditview.WriteStatus(&b, &st, testZone)
	testkit.Golden(t, "testdata/status_top_level.golden", b.String())
}

func TestStatusErrors(t *testing.T) {
	socket := filepath.Join(socketDir(t), "admin.sock")
	for _, tc := range []struct {
		name   string
		args   []string
		code   int
		stderr string
	}{
		{"not running", []string{"status", "--config", writeConfig(t, socket, "off")}, 1,
			"lnm is not running or not reachable at " + socket + ": "},
		{"admin off", []string{"status", "--config", writeConfig(t, "off", "off")}, 1, "the admin API is off in "},
		{"bad config", []string{"status", "--config", "/nonexistent/lnm.conf"}, 2, "/nonexistent/lnm.conf"},
		{"argument", []string{"status", "--config", writeConfig(t, socket, "off"), "now"}, 2, "status takes no arguments"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := runCLI(t, tc.args...)
			if code != tc.code || stdout != "" || !strings.Contains(stderr, tc.stderr) {
				t.Fatalf("exit %d, want %d with %q\nstdout: %s\nstderr: %s", code, tc.code, tc.stderr, stdout, stderr)
			}
		})
	}
	t.Run("environment", func(t *testing.T) {
		t.Setenv("LNM_CONFIG", writeConfig(t, socket, "off"))
		if code, _, stderr := runCLI(t, "status"); code != 1 || !strings.Contains(stderr, socket) {
			t.Fatalf("LNM_CONFIG not used: exit %d\n%s", code, stderr)
		}
	})
}
