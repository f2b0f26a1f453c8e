package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/lnm-project/lnm/audit"
	"github.com/lnm-project/lnm/internal/testkit"
)

// The console's browser test: Debian's headless chromium, driven with chromedp over its
// DevTools pipe (no debugging port), runs inside the level-4 namespace, the management
// network above the level-3 box, and opens the level-3 box's console on its upward address.
// The device, in its own namespace, asks with dig and connects with curl as in TestE2E.
//
//	dev 198.18.3.20 ──▶ l3 198.18.3.1 (DNS, proxy, DHCP) | 198.18.4.3:8444 console ◀── chromium in l4

const consoleAddr = l3UpAddr + ":8444"

// browserIn starts headless chromium inside the host's namespace and returns a chromedp
// context for it; the browser is stopped at cleanup.
func (l *lab) browserIn(host string) context.Context {
	l.t.Helper()
	if _, err := exec.LookPath("chromium"); err != nil {
		if os.Getenv("CI") != "" {
			l.t.Fatal("chromium missing (apt-get install chromium); .ci/run and make deps install it")
		}
		l.t.Skip("chromium missing (apt-get install chromium): skipping the console's browser test")
	}
	// chromedp runs this script as the browser: chromium, inside the namespace. `ip netns
	// exec` execs in place, so the pipe (fds 3 and 4) and the PID are chromium's own.
	wrapper := filepath.Join(l.dir, "chromium-in-"+host)
	script := fmt.Sprintf("#!/bin/sh\nexec ip netns exec %s chromium \"$@\"\n", l.ns(host))
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		l.t.Fatal(err)
	}
	logFile, err := os.Create(filepath.Join(l.dir, "chromium.log"))
	if err != nil {
		l.t.Fatal(err)
	}
	l.mu.Lock()
	l.logs = append(l.logs, logFile.Name())
	l.mu.Unlock()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(wrapper),
		chromedp.NoSandbox, // root in a test namespace
		chromedp.DisableGPU,
		chromedp.UserDataDir(filepath.Join(l.dir, "chromium-profile")),
		chromedp.Flag("ignore-certificate-errors", true), // the console's self-signed certificate
		chromedp.Flag("disable-component-update", true),
		chromedp.WindowSize(1280, 860),
		chromedp.Env("HOME="+l.dir),
		chromedp.CombinedOutput(logFile),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	l.t.Cleanup(func() {
		cancel()
		cancelAlloc()
		logFile.Close()
	})
	start := time.Now()
	// The first Do starts the browser; its context must not carry a deadline (it would stop
	// the browser when it passed), so a start that hangs is cut here instead.
	started := make(chan error, 1)
	go func() { started <- chromedp.Do(ctx) }()
	select {
	case err := <-started:
		if err != nil {
			l.t.Fatalf("starting chromium in %s: %v\n%s", l.ns(host), err, readFile(logFile.Name()))
		}
	case <-time.After(2 * time.Minute):
		cancel()
		<-started
		l.t.Fatalf("chromium in %s did not start within 2 minutes\n%s", l.ns(host), readFile(logFile.Name()))
	}
	l.t.Logf("chromium started in %s in %v", l.ns(host), time.Since(start).Round(time.Millisecond))
	return ctx
}

// step runs browser actions with a generous deadline, failing the test with what it did.
func step(t *testing.T, ctx context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	get(t, ctx, what, chromedp.Steps(actions...))
}

// get runs one browser action that returns a value, with a generous deadline.
func get[T any](t *testing.T, ctx context.Context, what string, a chromedp.Action[T]) T {
	t.Helper()
	c, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(c, a)
	if err != nil {
		url, _ := chromedp.Run(ctx, chromedp.Location())
		t.Fatalf("browser: %s: %v (page %s)", what, err, url)
	}
	return v
}

// shoot saves a screenshot of the page for docs/console when the tests run with -update.
func shoot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	if !*testkit.Update {
		return
	}
	png := get(t, ctx, "screenshot "+name, chromedp.FullScreenshot(100))
	dir := filepath.Join(moduleRoot(t), "docs", "console")
	os.MkdirAll(dir, 0o755)
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// postWithoutPage sends a change from the page's own origin with fetch, as a forged form
// would, and returns the status the console answered. csrf "" leaves the token out; "page"
// takes the page's real token.
func postWithoutPage(t *testing.T, ctx context.Context, path, pattern, csrf string) int {
	t.Helper()
	js := fmt.Sprintf(`(async () => {
		const f = new URLSearchParams({pattern: %q});
		const tok = document.querySelector('input[name=csrf]');
		if (%q === 'page' && tok) f.set('csrf', tok.value);
		const r = await fetch(%q, {method: 'POST', body: f, redirect: 'manual'});
		return r.status;
	})()`, pattern, csrf, path)
	return get(t, ctx, "POST "+path, chromedp.Evaluate[int](js, chromedp.EvalAwaitPromise))
}

// TestE2EConsole: the admin signs in from the management network; a device's denied name
// appears in Live; the admin allows it from there and the device's next dig and curl
// succeed, recorded with the admin's name; the Devices page names the DHCP client by host
// name; a viewer's change and a change without the CSRF token are refused by the server.
func TestE2EConsole(t *testing.T) {
	requireLab(t)
	bin := buildLNM(t)
	l := newLab(t)
	l.dumpLogsOnFailure()
	l.startInet()

	// L4 already allows blocked.evil.test: only level 3 keeps the device from it.
	level4 := addDirectives(t, addRule(t, exampleConfig(t, "level4.conf"), "blocked.evil.test"), "children "+l3UpAddr)
	l.startBox(bin, "l4", level4, l4DownAddr)
	mac := strings.Fields(l.mustRun("dev", "ip", "-br", "link", "show", "to-l3"))[2]
	boxDir := filepath.Join(l.dir, "l3")
	level3 := addDirectives(t, exampleConfig(t, "level3.conf"),
		"console "+consoleAddr+" dir "+filepath.Join(boxDir, "console"),
		"dhcp to-dev {",
		"    range 198.18.3.100 198.18.3.199",
		"    host  plc-07 "+mac+" "+devAddr,
		"    leases "+filepath.Join(boxDir, "leases.json"),
		"}")
	l3 := l.startBox(bin, "l3", level3, l3DownAddr)
	if !waitFor(15*time.Second, func() bool { return l.listening("l3", []string{consoleAddr}, nil) }) {
		t.Fatalf("console not listening on %s\n%s", consoleAddr, readFile(l3.log))
	}
	conf := filepath.Join(l.dir, "l3.conf")
	for _, u := range [][]string{{"alice", "admin"}, {"victor", "viewer"}} {
		c := exec.Command(bin, "console", "passwd", "--config", conf, "--role", u[1], u[0])
		c.Stdin = strings.NewReader("password of " + u[0] + "\n")
		if out, err := c.CombinedOutput(); err != nil {
			t.Fatalf("lnm console passwd %s: %v\n%s", u[0], err, out)
		}
	}

	// The device takes its reserved lease (the script keeps its address as it is).
	script := filepath.Join(l.dir, "udhcpc-keep.sh")
	os.WriteFile(script, []byte("#!/bin/sh\nexit 0\n"), 0o755)
	l.mustRun("dev", "busybox", "udhcpc", "-i", "to-l3", "-f", "-q", "-n", "-t", "5", "-T", "2", "-s", script)

	ctx := l.browserIn("l4")
	base := "https://" + consoleAddr
	signIn := func(user string) {
		t.Helper()
		step(t, ctx, "sign in as "+user,
			chromedp.Navigate(base+"/signin"),
			chromedp.WaitVisible(chromedp.ID("user")),
			chromedp.SendKeys(chromedp.ID("user"), user),
			chromedp.SendKeys(chromedp.ID("password"), "password of "+user),
			chromedp.Click(chromedp.ID("signin")),
			chromedp.WaitVisible(chromedp.ID("who")),
		)
	}
	step(t, ctx, "open the console signed out", chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.ID("user")))
	shoot(t, ctx, "signin")
	signIn("alice")
	if text := get(t, ctx, "overview", chromedp.Text(chromedp.ID("who"))); text != "alice (admin)" {
		t.Errorf("signed in as %q", text)
	}

	// Live: the device's denied name appears as it is asked.
	step(t, ctx, "open Live", chromedp.Navigate(base+"/live"), chromedp.WaitVisible(`//span[@id="state"][text()="following"]`))
	asked := time.Now()
	if r, out, err := l.dig("dev", "", "blocked.evil.test", "A"); err != nil || r.status != "NXDOMAIN" {
		t.Fatalf("dig blocked.evil.test before the console allows it: %+v %v\n%s", r, err, out)
	}
	row := `//table[@id="live"]//tr[td[text()="blocked.evil.test"]]`
	step(t, ctx, "the denial in Live", chromedp.WaitVisible(row))
	t.Logf("the denial of blocked.evil.test appeared in Live %v after dig was started (it must within a second; dig itself takes part of it)", time.Since(asked).Round(time.Millisecond))
	shoot(t, ctx, "live")

	// The admin allows it from there: the link opens the Allow list with the rule filled in.
	step(t, ctx, "allow from Live", chromedp.Click(row+`//a[@class="allow"]`), chromedp.WaitVisible(chromedp.ID("pattern")))
	if text := get(t, ctx, "the pre-filled rule", chromedp.Value(chromedp.ID("pattern"))); text != "blocked.evil.test" {
		t.Fatalf("the allow link filled in %q", text)
	}
	step(t, ctx, "add the rule", chromedp.Click(chromedp.ID("addrule")), chromedp.WaitVisible(chromedp.ID("note")))
	if text := get(t, ctx, "the note", chromedp.Text(chromedp.ID("note"))); !strings.HasPrefix(text, "added blocked.evil.test") {
		t.Fatalf("after add the page says %q", text)
	}
	shoot(t, ctx, "allow")
	if r, out, err := l.dig("dev", "", "blocked.evil.test", "A"); err != nil || r.status != "NOERROR" || len(r.answers) != 1 || r.answers[0] != l3DownAddr {
		t.Errorf("dig blocked.evil.test after the console allowed it: %+v %v\n%s", r, err, out)
	}
	if body, errOut, err := l.curl("dev", "https://blocked.evil.test/"); err != nil || !strings.Contains(body, "sni=blocked.evil.test ") {
		t.Errorf("curl https://blocked.evil.test/ after the console allowed it: %v %q\n%s", err, body, errOut)
	}
	byAlice := false
	for _, r := range l.auditQuery(bin, "l3", "--kind", "config") {
		byAlice = byAlice || (r.Kind == audit.KindConfig && r.User == "alice" && strings.Contains(r.Change, "+blocked.evil.test"))
	}
	if !byAlice {
		t.Error("no config record of the add with user alice")
	}

	// One more name the list lacks, for the Names and Learn pages.
	if r, _, _ := l.dig("dev", "", "telemetry.vendor.test", "A"); r.status != "NXDOMAIN" {
		t.Errorf("telemetry.vendor.test: %s, want NXDOMAIN", r.status)
	}

	// Devices: the DHCP client by the name of its lease.
	step(t, ctx, "Devices", chromedp.Navigate(base+"/devices"),
		chromedp.WaitVisible(`//table[@id="devices"]//tr[td[a[text()="`+devAddr+`"]]]/td[@class="device"][text()="plc-07"]`))
	shoot(t, ctx, "devices")
	for _, p := range []string{"names", "suggestions"} {
		step(t, ctx, p, chromedp.Navigate(base+"/"+strings.Replace(p, "suggestions", "learn", 1)), chromedp.WaitVisible(`//*[@id="`+p+`"]//td[contains(., "telemetry.vendor.test")]`))
		shoot(t, ctx, strings.Replace(p, "suggestions", "learn", 1))
	}
	step(t, ctx, "Audit search", chromedp.Navigate(base+"/audit?since=1h&client="+devAddr), chromedp.WaitVisible(chromedp.ID("export")))
	shoot(t, ctx, "audit")
	step(t, ctx, "Overview", chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.ID("mode")))
	shoot(t, ctx, "overview")

	// A change without the CSRF token is refused, with the admin's session.
	step(t, ctx, "Allow list", chromedp.Navigate(base+"/allow"), chromedp.WaitVisible(chromedp.ID("rules")))
	if code := postWithoutPage(t, ctx, "/allow/add", "nocsrf.evil.test", ""); code != 403 {
		t.Errorf("add without the CSRF token: %d, want 403", code)
	}

	// A viewer: no add form, and the change refused by the server even with a valid token.
	step(t, ctx, "sign out", chromedp.Navigate(base+"/"), chromedp.Click(`//form[@action="/signout"]/button`), chromedp.WaitVisible(chromedp.ID("user")))
	signIn("victor")
	step(t, ctx, "viewer's allow list", chromedp.Navigate(base+"/allow"), chromedp.WaitVisible(chromedp.ID("rules")))
	if forms := get(t, ctx, "count add forms", chromedp.Evaluate[int](`document.querySelectorAll('form[action="/allow/add"]').length`)); forms != 0 {
		t.Errorf("the viewer's allow page offers %d add forms", forms)
	}
	if code := postWithoutPage(t, ctx, "/allow/add", "viewer.evil.test", "page"); code != 403 {
		t.Errorf("viewer's add with a valid token: %d, want 403", code)
	}
	for _, r := range l.auditQuery(bin, "l3", "--kind", "config") {
		if strings.Contains(r.Change, "nocsrf.evil.test") || strings.Contains(r.Change, "viewer.evil.test") {
			t.Errorf("a refused change reached the box: %s", r.Change)
		}
	}
	if r, _, _ := l.dig("dev", "", "viewer.evil.test", "A"); r.status != "NXDOMAIN" {
		t.Errorf("viewer.evil.test: %s, want NXDOMAIN", r.status)
	}
}
