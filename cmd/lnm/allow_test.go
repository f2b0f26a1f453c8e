package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/lnm-project/lnm/appliance"
	"github.com/lnm-project/lnm/config"
	"github.com/lnm-project/lnm/internal/testkit"
	"github.com/lnm-project/lnm/onboard"
)

// allowConfig writes a config with three hand-written rules and a socket where no box runs.
func allowConfig(t *testing.T, extra ...string) string {
	t.Helper()
	return writeConfig(t, filepath.Join(socketDir(t), "admin.sock"), "off", append([]string{
		"proxy 443 8883",
		"allow {",
		"    *.azure.test",
		"    mqtt.vendor.test 8883",
		"    opcua.vendor.test 443 from 198.18.3.20",
		"}",
	}, extra...)...)
}

// managedRules returns the managed file's rules as text, in file order.
func managedRules(t *testing.T, conf string) []string {
	t.Helper()
	l, err := appliance.LoadAllowList(conf)
	if err != nil {
		t.Fatalf("the files do not load: %v", err)
	}
	var out []string
	for _, r := range l.Rules {
		if r.Managed {
			out = append(out, r.Rule)
		}
	}
	slices.Sort(out)
	return out
}

// TestAllowFiles runs every allow command with no box running: changes edit the managed file
// directly, under its lock, and say so.
func TestAllowFiles(t *testing.T) {
	conf := allowConfig(t)
	dir := filepath.Dir(conf)
	mpath := filepath.Join(dir, "lnm.allow")
	for _, tc := range []struct {
		name           string
		args           []string
		code           int
		stdout, stderr string // substrings; stdout "-" means empty
	}{
		{"add", []string{"add", "historian.plant.test", "--port", "443", "--from", "198.18.3.0/24", "--comment", "MES link"}, 0,
			"added historian.plant.test 443 from 198.18.3.0/24 (" + mpath + ":6)\nwrote " + mpath + ": 4 rules, list ",
			"lnm is not running (nothing answers at "},
		{"add flags first", []string{"add", "--to", "198.18.4.20:443", "--port=443", "east.plant.test"}, 0,
			"added east.plant.test 443 to 198.18.4.20:443 (" + mpath + ":9)", "edited the file directly"},
		{"duplicate", []string{"add", "historian.plant.test", "--from", "198.18.3.0/24", "--port", "443"}, 2, "-",
			`rule "historian.plant.test 443 from 198.18.3.0/24": already in the allow list at ` + mpath + ":6"},
		{"duplicate of config rule", []string{"add", "*.azure.test"}, 2, "-", "already in the allow list at " + conf + ":7"},
		{"no proxy on port", []string{"add", "x.test", "--port", "1883"}, 2, "-",
			mpath + `:12: rule "x.test 1883": port 1883 has no proxy listener (proxy listens on 443 8883)`},
		{"bad pattern", []string{"add", "a*.test"}, 2, "-", `invalid rule: pattern "a*.test": '*' is allowed only`},
		{"bad port", []string{"add", "a.test", "--port", "https"}, 2, "-", `--port "https": want a number`},
		{"bad from", []string{"add", "a.test", "--from", "10.0.0.1/8"}, 2, "-", "10.0.0.1/8 has bits set past /8: did you mean 10.0.0.0/8?"},
		{"bad to", []string{"add", "a.test", "--to", "broker"}, 2, "-", `to: destination "broker": want HOST:PORT`},
		{"unknown flag", []string{"add", "a.test", "--ports", "443"}, 2, "-", "unknown flag --ports"},
		{"two patterns", []string{"add", "a.test", "b.test"}, 2, "-", "allow add takes one PATTERN"},
		{"remove config rule", []string{"remove", "*.azure.test"}, 1, "-",
			"rule *.azure.test is written in " + conf + ":7; edit that file"},
		{"remove unknown", []string{"remove", "nowhere.test"}, 1, "-", "nowhere.test: no rule has this pattern"},
		{"remove", []string{"remove", "east.plant.test"}, 0,
			"removed east.plant.test 443 to 198.18.4.20:443 (" + mpath + ":9)\nwrote " + mpath + ": 4 rules", ""},
		{"list", []string{"list"}, 0, "RULE                                         WRITTEN IN\n" +
			"opcua.vendor.test 443 from 198.18.3.20/32    " + conf + ":9\n" +
			"historian.plant.test 443 from 198.18.3.0/24  " + mpath + ":6\n" +
			"mqtt.vendor.test 8883                        " + conf + ":8\n" +
			"*.azure.test                                 " + conf + ":7\n",
			"rules read from the files, without hits"},
		{"list json", []string{"list", "--json"}, 0, `"note": [
        "added by uid ` + fmt.Sprint(os.Getuid()) + ` at `, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before, _ := os.ReadFile(mpath)
			code, stdout, stderr := runCLI(t, append([]string{"allow"}, append(tc.args, "--config", conf)...)...)
			okOut := strings.Contains(stdout, tc.stdout) || (tc.stdout == "-" && stdout == "")
			if code != tc.code || !okOut || !strings.Contains(stderr, tc.stderr) {
				t.Fatalf("exit %d, want %d\nstdout: %s\nwant:   %s\nstderr: %s\nwant:   %s", code, tc.code, stdout, tc.stdout, stderr, tc.stderr)
			}
			if after, _ := os.ReadFile(mpath); code != 0 && string(after) != string(before) {
				t.Fatalf("a refused change wrote the file:\n%s", after)
			}
		})
	}
	if c, err := config.Load(conf); err != nil || len(c.Rules) != 4 {
		t.Fatalf("after the edits Load gives %v, %v", c, err)
	}
}

func TestAllowTest(t *testing.T) {
	conf := allowConfig(t, "sources 198.18.3.0/24", "tcp 1883 broker.plant.test:1883", "zone plant.test {", "    forward 198.18.3.2", "}")
	for _, tc := range []struct {
		args []string
		code int
		out  string
	}{
		{[]string{"api.azure.test:443"}, 0, "allow api.azure.test:443\n  rule     *.azure.test (" + conf + ":7)\n"},
		{[]string{"Api.Azure.Test"}, 0, "allow api.azure.test (DNS)\n"},
		{[]string{"azure.test"}, 1, "deny  azure.test (DNS): empty_non_terminal\n  nearest  *.azure.test (" + conf + ":7)\n" +
			"  why      *.azure.test does not match azure.test itself; write .azure.test to allow both\n"},
		{[]string{"mqtt.vendor.test:443"}, 1, "  why      mqtt.vendor.test is allowed only on 8883, not 443\n"},
		{[]string{"opcua.vendor.test:443", "--from", "198.18.3.21"}, 1,
			"deny  opcua.vendor.test:443 from 198.18.3.21: from_mismatch\n  nearest  opcua.vendor.test 443 from 198.18.3.20/32 (" + conf + ":9)\n" +
				"  why      opcua.vendor.test is allowed only from 198.18.3.20/32, not from 198.18.3.21\n"},
		{[]string{"--from", "198.18.3.20", "opcua.vendor.test:443"}, 0, "allow opcua.vendor.test:443 from 198.18.3.20\n"},
		{[]string{"opcua.vendor.test:443"}, 1, "allowed only from 198.18.3.20/32; name the device to test it"},
		{[]string{"api.azure.test", "--from", "10.0.0.1"}, 1, "10.0.0.1 is outside sources"},
		{[]string{"api.azure.test:9999"}, 1, "no proxy listens on port 9999"},
		{[]string{"anything.test:1883"}, 0, "route    tcp 1883 to broker.plant.test:1883"},
		{[]string{"historian.plant.test"}, 1, "note  historian.plant.test is in zone plant.test"},
		{[]string{"www.example.com"}, 1, "why      no rule matches www.example.com or any name near it"},
		{[]string{"a.test:0"}, 2, ""},
		{[]string{"a..test"}, 2, ""},
		{[]string{"a.test", "--from", "host"}, 2, ""},
		{[]string{}, 2, ""},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			code, stdout, stderr := runCLI(t, append([]string{"allow", "test", "--config", conf}, tc.args...)...)
			if code != tc.code || !strings.Contains(stdout, tc.out) {
				t.Fatalf("exit %d, want %d\nstdout: %s\nwant:   %s\nstderr: %s", code, tc.code, stdout, tc.out, stderr)
			}
		})
	}
}

// TestAllowTestLearn: in learn mode a name the list denies is explained as enforce would deny
// it, with a note that the box lets it through; strangers are still refused.
func TestAllowTestLearn(t *testing.T) {
	conf := allowConfig(t, "mode learn", "sources 198.18.3.0/24")
	for _, tc := range []struct {
		args []string
		code int
		out  string
	}{
		{[]string{"evil.test:443", "--from", "198.18.3.20"}, 1, "deny  evil.test:443 from 198.18.3.20: not_listed\n  why      "},
		{[]string{"evil.test:443", "--from", "198.18.3.20"}, 1, "  mode     learn: the box lets it through and records it as would-deny\n"},
		{[]string{"evil.test"}, 1, "  mode     learn: the box lets it through"},
		{[]string{"iot.azure.test:8883", "--from", "198.18.3.20"}, 0, "allow iot.azure.test:8883 from 198.18.3.20\n"},
		{[]string{"evil.test:443", "--from", "10.9.9.9"}, 1, "10.9.9.9 is outside sources; the box refuses it whatever the name"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			code, stdout, stderr := runCLI(t, append([]string{"allow", "test", "--config", conf}, tc.args...)...)
			if code != tc.code || !strings.Contains(stdout, tc.out) {
				t.Fatalf("exit %d, want %d\nstdout: %s\nwant:   %s\nstderr: %s", code, tc.code, stdout, tc.out, stderr)
			}
		})
	}
}

// TestAllowBox sends add, list and remove through a running box: the change applies at once
// and the list has hits.
func TestAllowBox(t *testing.T) {
	fixClock(t)
	dnsPort := testkit.FreePort(t)
	socket := filepath.Join(socketDir(t), "admin.sock")
	conf := writeConfig(t, socket, "off", fmt.Sprintf("dns %d", dnsPort), "proxy 443", "parent 127.0.0.2",
		"allow {", "    *.azure.test", "}")
	cfg, err := config.Load(conf)
	if err != nil {
		t.Fatal(err)
	}
	rt, err := appliance.Start(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	rcode := func(name string) int {
		t.Helper()
		r, err := dns.Exchange(new(dns.Msg).SetQuestion(dns.Fqdn(name), dns.TypeA), fmt.Sprintf("127.0.0.1:%d", dnsPort))
		if err != nil {
			t.Fatal(err)
		}
		return r.Rcode
	}
	if rc := rcode("historian.plant.test"); rc != dns.RcodeNameError {
		t.Fatalf("before add: rcode %d", rc)
	}
	code, stdout, stderr := runCLI(t, "allow", "add", "historian.plant.test", "--config", conf)
	if code != 0 || stderr != "" || !strings.Contains(stdout, "the box applied it: 2 rules") {
		t.Fatalf("add: exit %d\n%s%s", code, stdout, stderr)
	}
	if rc := rcode("historian.plant.test"); rc != dns.RcodeSuccess {
		t.Fatalf("after add: rcode %d", rc)
	}
	code, stdout, stderr = runCLI(t, "allow", "list", "--config", conf)
	if code != 0 || stderr != "" || !strings.Contains(stdout, "RULE                  WRITTEN IN") ||
		!strings.Contains(stdout, "historian.plant.test  "+filepath.Join(filepath.Dir(conf), "lnm.allow")+":6  1     ") {
		t.Fatalf("list: exit %d\n%s%s", code, stdout, stderr)
	}
	code, _, stderr = runCLI(t, "allow", "remove", "*.azure.test", "--config", conf)
	if code != 1 || !strings.Contains(stderr, "rule *.azure.test is written in "+conf+":9; edit that file") {
		t.Fatalf("remove of a config rule: exit %d\n%s", code, stderr)
	}
	code, stdout, stderr = runCLI(t, "allow", "add", "x.test", "--port", "8883", "--config", conf)
	if code != 2 || !strings.Contains(stderr, "port 8883 has no proxy listener") {
		t.Fatalf("add of an invalid rule: exit %d\n%s%s", code, stdout, stderr)
	}
	code, stdout, stderr = runCLI(t, "allow", "remove", "historian.plant.test", "--config", conf)
	if code != 0 || stderr != "" || !strings.Contains(stdout, "the box applied it: 1 rule,") {
		t.Fatalf("remove: exit %d\n%s%s", code, stdout, stderr)
	}
	if rc := rcode("historian.plant.test"); rc != dns.RcodeNameError {
		t.Fatalf("after remove: rcode %d", rc)
	}
}

// TestAllowConcurrentProcesses runs 8 `lnm allow add` processes at once with no box: the
// lock serializes them, so no edit is lost and the file always parses.
func TestAllowConcurrentProcesses(t *testing.T) {
	bin := buildLNM(t)
	conf := allowConfig(t)
	var wg sync.WaitGroup
	var want []string
	for i := range 8 {
		name := fmt.Sprintf("d%d.plant.test", i)
		want = append(want, name)
		wg.Go(func() {
			out, err := exec.Command(bin, "allow", "add", name, "--comment", "process "+fmt.Sprint(i), "--config", conf).CombinedOutput()
			if err != nil {
				t.Errorf("lnm allow add %s: %v\n%s", name, err, out)
			}
		})
	}
	wg.Wait()
	slices.Sort(want)
	if got := managedRules(t, conf); !slices.Equal(got, want) {
		t.Fatalf("managed rules %q, want %q", got, want)
	}
}

// TestAllowKillDuringWrite kills `lnm allow add` with SIGKILL at random moments, 50 times:
// the managed file always parses and holds either the rules before or those plus the new one.
func TestAllowKillDuringWrite(t *testing.T) {
	bin := buildLNM(t)
	conf := allowConfig(t)
	// How long one add takes, to spread the kills over its whole run.
	begin := time.Now()
	if out, err := exec.Command(bin, "allow", "add", "first.plant.test", "--config", conf).CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	span := time.Since(begin) * 5 / 4
	prev := managedRules(t, conf)
	var added, killedBefore int
	for i := range 50 {
		name := fmt.Sprintf("k%d.plant.test", i)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		cmd := exec.CommandContext(ctx, bin, "allow", "add", name, "--config", conf)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(rand.Int64N(int64(span))))
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		cancel()
		got := managedRules(t, conf)
		withNew := slices.Sorted(slices.Values(append(slices.Clone(prev), name)))
		switch {
		case slices.Equal(got, withNew):
			added++
		case slices.Equal(got, prev):
			killedBefore++
		default:
			t.Fatalf("kill %d: managed rules %q, want %q or %q", i, got, prev, withNew)
		}
		prev = got
	}
	t.Logf("50 kills: %d after the rename, %d before it", added, killedBefore)
	if tmp, _ := filepath.Glob(filepath.Join(filepath.Dir(conf), ".lnm.allow.tmp-*")); len(tmp) > 1 {
		t.Errorf("temp files pile up: %v", tmp) // the next editor removes a killed one's
	}
}

// TestAllowAddPreset adds a preset's endpoint list in one change, narrowed by --from; a second
// time everything is skipped.
func TestAllowAddPreset(t *testing.T) {
	conf := allowConfig(t)
	rules, err := onboard.Preset("azure-arc")
	if err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := runCLI(t, "allow", "add", "--preset", "azure-arc", "--from", "198.18.3.20", "--config", conf)
	if code != 0 || strings.Count(stdout, "added ") != len(rules) {
		t.Fatalf("exit %d\n%s%s", code, stdout, stderr)
	}
	got := managedRules(t, conf)
	if len(got) != len(rules) || !strings.HasSuffix(got[0], " from 198.18.3.20/32") {
		t.Fatalf("managed rules %q", got)
	}
	l, _ := appliance.LoadAllowList(conf)
	for _, r := range l.Rules {
		if r.Managed && (len(r.Note) != 1 || !strings.HasSuffix(r.Note[0], ": preset azure-arc")) {
			t.Fatalf("note %q", r.Note)
		}
	}
	code, stdout, stderr = runCLI(t, "allow", "add", "--from", "198.18.3.20", "--preset", "azure-arc", "--config", conf)
	if code != 0 || stdout != "nothing to add: the allow list has every rule\n" || strings.Count(stderr, "skipped ") != len(rules) {
		t.Fatalf("second add: exit %d\n%s%s", code, stdout, stderr)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--preset", "azure-nothing"}, `no preset "azure-nothing" (have `},
		{[]string{"--preset", "azure-arc", "--to", "198.18.4.20:443"}, "cannot go with --preset"},
		{nil, "allow add takes one PATTERN, or --preset NAME"},
	} {
		code, _, stderr := runCLI(t, append(append([]string{"allow", "add"}, tc.args...), "--config", conf)...)
		if code != 2 || !strings.Contains(stderr, tc.want) {
			t.Errorf("%q: exit %d, %s", tc.args, code, stderr)
		}
	}
}

// TestPositionalsAlias: a flag given by its alias after a positional argument still counts.
func TestPositionalsAlias(t *testing.T) {
	dir := t.TempDir()
	conf := dir + "/lnm.conf"
	os.WriteFile(conf, []byte("lnm {\n    listen 127.0.0.1\n    admin off\n    audit off\n    allow {\n        x.test\n    }\n}\n"), 0o644)
	t.Setenv("LNM_CONFIG", "/nonexistent/lnm.conf")
	code, stdout, stderr := runCLI(t, "allow", "test", "x.test", "-c", conf)
	if code != 0 || !strings.Contains(stdout, "x.test") {
		t.Fatalf("allow test x.test -c FILE: exit %d\n%s%s", code, stdout, stderr)
	}
}
