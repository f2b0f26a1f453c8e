package main

// End to end: onboarding a plant in learn mode. The device reaches a name no list has; the
// boxes record it as would-deny; `lnm allow suggest --apply` turns the records into rules;
// back in enforce mode the device keeps working while other names stay blocked.

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lnm-project/lnm/audit"
)

func TestE2ELearn(t *testing.T) {
	requireLab(t)
	bin := buildLNM(t)
	l := newLab(t)
	l.dumpLogsOnFailure()
	l.startInet()
	l.startBox(bin, "l4", exampleConfig(t, "level4.conf"), l4DownAddr)
	l.startBox(bin, "l3", exampleConfig(t, "level3.conf"), l3DownAddr)
	lnm := func(host string, args ...string) string {
		t.Helper()
		args = append(args, "--config", filepath.Join(l.dir, host+".conf"))
		out, err := exec.Command(bin, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("lnm %v on %s: %v\n%s", args, host, err, out)
		}
		return string(out)
	}
	const name = "blocked.evil.test" // on no list

	if _, _, err := l.curl("dev", "https://"+name+"/"); err == nil {
		t.Fatalf("%s reachable before learn mode", name)
	}
	for _, box := range []string{"l4", "l3"} {
		lnm(box, "mode", "learn")
	}
	if r, out, err := l.dig("dev", "", name, "A"); err != nil || len(r.answers) != 1 || r.answers[0] != l3DownAddr {
		t.Fatalf("learn mode: dig %s: %+v %v\n%s", name, r, err, out)
	}
	if body, errOut, err := l.curl("dev", "https://"+name+"/"); err != nil || !strings.Contains(body, "sni="+name) {
		t.Fatalf("learn mode: curl %s: %v\n%s%s", name, err, body, errOut)
	}
	wouldDeny := 0
	for _, r := range l.auditQuery(bin, "l3", "--name", name, "--verdict", audit.VerdictWouldDeny) {
		if r.Kind == audit.KindDNS || r.Event == audit.EventOpen {
			wouldDeny++
		}
	}
	if wouldDeny < 2 {
		t.Errorf("level 3 recorded %d would-deny query and connection records for %s, want both", wouldDeny, name)
	}

	for _, box := range []string{"l4", "l3"} {
		out := lnm(box, "allow", "suggest", "--apply", "--since", "1h")
		if !strings.Contains(out, name) {
			t.Fatalf("suggest on %s did not propose %s:\n%s", box, name, out)
		}
		lnm(box, "mode", "enforce")
	}
	if body, errOut, err := l.curl("dev", "https://"+name+"/"); err != nil || !strings.Contains(body, "sni="+name) {
		t.Errorf("enforce after suggest --apply: curl %s: %v\n%s%s", name, err, body, errOut)
	}
	if r, _, err := l.dig("dev", "", "never.evil.test", "A"); err != nil || r.status != "NXDOMAIN" {
		t.Errorf("enforce: an unlisted name must not resolve: %+v %v", r, err)
	}
	if _, _, err := l.curl("dev", "https://never.evil.test/", "--resolve", "never.evil.test:443:"+l3DownAddr); err == nil {
		t.Error("enforce: an unlisted SNI got through")
	}
}
