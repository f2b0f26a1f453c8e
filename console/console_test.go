package console_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/lnm-project/lnm/adminapi"
	"github.com/lnm-project/lnm/appliance"
	"github.com/lnm-project/lnm/audit"
	"github.com/lnm-project/lnm/config"
	"github.com/lnm-project/lnm/console"
	"github.com/lnm-project/lnm/internal/testkit"
)

func TestMain(m *testing.M) {
	console.FastHashes()
	testkit.Main(m)
}

// lab is a running box on loopback with a console in front of it, served by an httptest TLS
// server, and the users alice (admin) and victor (viewer).
type lab struct {
	dns   string // the box's DNS address
	api   *adminapi.Client
	url   string // the console
	clock *clock
}

// clock is the console's clock: it stands still where the lab started it, so that how long
// bcrypt takes on a loaded machine cannot expire a throttle, and moves only when the test
// moves it.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

const password = "correct horse battery"

func newLab(t testing.TB, directives ...string) *lab {
	t.Helper()
	l, dir := newBox(t, directives...)
	l.startConsole(t, dir)
	return l
}

// newBox starts the box alone; it returns the lab without a console and the box's directory.
func newBox(t testing.TB, directives ...string) (*lab, string) {
	t.Helper()
	dnsPort, proxyPort := testkit.FreePort(t), testkit.FreePort(t)
	dir := t.TempDir()
	conf := filepath.Join(dir, "lnm.conf")
	text := fmt.Sprintf(`lnm {
    name    box3
    listen  127.0.0.1
    dns     %d
    proxy   %d
    parent  127.0.0.2
    admin   %s/admin.sock
    audit   %s/audit
    %s
    allow {
        *.azure.test
    }
}
`, dnsPort, proxyPort, dir, dir, strings.Join(directives, "\n    "))
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(conf)
	if err != nil {
		t.Fatal(err)
	}
	rt, err := appliance.Start(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close() })
	api := adminapi.NewClient(filepath.Join(dir, "admin.sock"))
	t.Cleanup(api.Close)
	return &lab{dns: fmt.Sprintf("127.0.0.1:%d", dnsPort), api: api}, dir
}

// startConsole serves a console for the lab's box, with its users alice and victor.
func (l *lab) startConsole(t testing.TB, dir string) {
	t.Helper()
	cdir := filepath.Join(dir, "console")
	if err := os.Mkdir(cdir, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, u := range []struct {
		name string
		role console.Role
	}{{"alice", console.RoleAdmin}, {"victor", console.RoleViewer}} {
		if err := console.SetPassword(filepath.Join(cdir, console.UsersFile), u.name, u.role, password); err != nil {
			t.Fatal(err)
		}
	}
	clk := &clock{t: time.Now()}
	c, err := console.New(console.Options{Dir: cdir, Admin: l.api, Box: "box3", Now: clk.now, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewTLSServer(c.Handler())
	t.Cleanup(srv.Close)
	l.url, l.clock = srv.URL, clk
}

// browser is one client with its own cookies; it does not follow redirects, so tests see
// them.
type browser struct {
	t    testing.TB
	l    *lab
	http *http.Client
	csrf string // the last page's CSRF token
}

func (l *lab) browser(t testing.TB) *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: t, l: l, http: &http.Client{
		Jar:           jar,
		Transport:     &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Timeout:       30 * time.Second,
	}}
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// do sends a request and returns the status, the Location and the body; it keeps the
// page's CSRF token.
func (b *browser) do(method, path string, form url.Values) (int, string, string) {
	b.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, _ := http.NewRequest(method, b.l.url+path, body)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := b.http.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if m := csrfRE.FindSubmatch(data); m != nil {
		b.csrf = string(m[1])
	}
	return resp.StatusCode, resp.Header.Get("Location"), string(data)
}

func (b *browser) get(path string) (int, string) {
	code, _, body := b.do("GET", path, nil)
	return code, body
}

// post sends a form with the current CSRF token (unless the form sets csrf itself).
func (b *browser) post(path string, form url.Values) (int, string, string) {
	if _, ok := form["csrf"]; !ok {
		form.Set("csrf", b.csrf)
	}
	return b.do("POST", path, form)
}

func (b *browser) signIn(user, pw string) int {
	b.t.Helper()
	if code, _ := b.get("/signin"); code != http.StatusOK {
		b.t.Fatalf("sign-in page: %d", code)
	}
	code, _, _ := b.post("/signin", url.Values{"user": {user}, "password": {pw}, "next": {"/"}})
	if code == http.StatusSeeOther {
		b.get("/") // the overview's token
	}
	return code
}

func (l *lab) query(t testing.TB, name string) int {
	t.Helper()
	r, err := dns.Exchange(new(dns.Msg).SetQuestion(dns.Fqdn(name), dns.TypeA), l.dns)
	if err != nil {
		t.Fatal(err)
	}
	return r.Rcode
}

func (l *lab) rules(t *testing.T) []string {
	t.Helper()
	list, err := l.api.AllowList(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range list.Rules {
		out = append(out, r.Rule)
	}
	return out
}

// TestSignIn: every page sends a signed-out browser to the sign-in page; a wrong password
// is refused; the right one opens the overview; sign-out ends the session.
func TestSignIn(t *testing.T) {
	l := newLab(t)
	b := l.browser(t)
	if code, loc, _ := b.do("GET", "/devices", nil); code != http.StatusSeeOther || !strings.HasPrefix(loc, "/signin?next=%2Fdevices") {
		t.Errorf("signed out GET /devices: %d to %q, want 303 to the sign-in page", code, loc)
	}
	if code := b.signIn("alice", "wrong password"); code != http.StatusUnauthorized {
		t.Errorf("wrong password: %d, want 401", code)
	}
	if code := b.signIn("nobody", password); code != http.StatusUnauthorized {
		t.Errorf("unknown user: %d, want 401", code)
	}
	if code := b.signIn("alice", password); code != http.StatusSeeOther {
		t.Fatalf("sign in: %d, want 303", code)
	}
	code, body := b.get("/")
	if code != http.StatusOK || !strings.Contains(body, "alice (admin)") || !strings.Contains(body, "box3") {
		t.Errorf("overview: %d\n%s", code, body)
	}
	req, _ := http.NewRequest("GET", l.url+"/", nil)
	for _, c := range b.http.Jar.Cookies(req.URL) {
		if c.Name == "lnm_session" && c.Value == "" {
			t.Error("empty session cookie")
		}
	}
	if code, loc, _ := b.post("/signout", url.Values{}); code != http.StatusSeeOther || loc != "/signin" {
		t.Errorf("sign out: %d %q", code, loc)
	}
	if code, _, _ := b.do("GET", "/", nil); code != http.StatusSeeOther {
		t.Errorf("after sign-out GET /: %d, want 303", code)
	}
}

// TestSessionCookieFlags: the session cookie is HttpOnly, Secure and SameSite=Strict.
func TestSessionCookieFlags(t *testing.T) {
	l := newLab(t)
	b := l.browser(t)
	b.get("/signin")
	b.http.Jar = nil
	form := url.Values{"user": {"alice"}, "password": {password}, "csrf": {b.csrf}}
	req, _ := http.NewRequest("POST", l.url+"/signin", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.AddCookie(&http.Cookie{Name: "lnm_signin", Value: b.csrf})
	resp, err := b.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var found bool
	for _, c := range resp.Cookies() {
		if c.Name == "lnm_session" {
			found = true
			if !c.HttpOnly || !c.Secure || c.SameSite != http.SameSiteStrictMode || len(c.Value) < 40 {
				t.Errorf("session cookie %+v: want HttpOnly, Secure, SameSite=Strict, a long random value", c)
			}
		}
	}
	if !found {
		t.Errorf("sign-in (%d) set no session cookie", resp.StatusCode)
	}
}

// TestSignInCSRF: a sign-in without the form's token, or with another browser's, is refused.
func TestSignInCSRF(t *testing.T) {
	l := newLab(t)
	b := l.browser(t)
	b.get("/signin")
	if code, _, body := b.post("/signin", url.Values{"user": {"alice"}, "password": {password}, "csrf": {""}}); code != http.StatusForbidden || !strings.Contains(body, "CSRF") {
		t.Errorf("sign-in without token: %d", code)
	}
	other := l.browser(t)
	other.get("/signin")
	if code, _, _ := b.post("/signin", url.Values{"user": {"alice"}, "password": {password}, "csrf": {other.csrf}}); code != http.StatusForbidden {
		t.Errorf("sign-in with another browser's token: %d, want 403", code)
	}
}

// TestSignInThrottled: after three failures from one source, the next attempt is refused
// without checking the password, even the right one, until the wait is over.
func TestSignInThrottled(t *testing.T) {
	l := newLab(t)
	b := l.browser(t)
	for range 3 {
		if code := b.signIn("alice", "guess"); code != http.StatusUnauthorized {
			t.Fatalf("wrong password: %d", code)
		}
	}
	if code := b.signIn("alice", password); code != http.StatusTooManyRequests {
		t.Errorf("4th attempt right after 3 failures: %d, want 429", code)
	}
	l.clock.add(2 * time.Second)
	if code := b.signIn("alice", password); code != http.StatusSeeOther {
		t.Errorf("after the wait: %d, want 303", code)
	}
}

// TestForgedCookie: a session cookie the console did not issue is a signed-out user: pages
// send it to sign in, changes are refused and change nothing.
func TestForgedCookie(t *testing.T) {
	l := newLab(t)
	b := l.browser(t)
	u, _ := url.Parse(l.url)
	b.http.Jar.SetCookies(u, []*http.Cookie{{Name: "lnm_session", Value: "Zm9yZ2VkZm9yZ2VkZm9yZ2VkZm9yZ2VkZm9yZ2VkZm9y"}})
	if code, _, _ := b.do("GET", "/allow", nil); code != http.StatusSeeOther {
		t.Errorf("forged cookie GET /allow: %d, want 303 to sign in", code)
	}
	before := l.rules(t)
	code, _, body := b.post("/allow/add", url.Values{"pattern": {"evil.test"}, "csrf": {"whatever"}})
	if code != http.StatusUnauthorized || !strings.Contains(body, "signed out") {
		t.Errorf("forged cookie add: %d", code)
	}
	if code, _, _ := b.post("/learn/mode", url.Values{"mode": {"learn"}, "csrf": {"x"}}); code != http.StatusUnauthorized {
		t.Errorf("forged cookie mode: %d, want 401", code)
	}
	if after := l.rules(t); strings.Join(after, "\n") != strings.Join(before, "\n") {
		t.Errorf("rules changed: %q → %q", before, after)
	}
}

// TestAllowAddRemove: an admin adds a rule (the name resolves at once, the audit record names
// the user) and removes it; rules the grammar refuses are answered 422 with the reason and
// change nothing.
func TestAllowAddRemove(t *testing.T) {
	l := newLab(t)
	b := l.browser(t)
	if b.signIn("alice", password) != http.StatusSeeOther {
		t.Fatal("sign in")
	}
	if l.query(t, "historian.plant.test") != dns.RcodeNameError {
		t.Fatal("historian.plant.test resolves before the add")
	}
	b.get("/allow?pattern=historian.plant.test")
	code, loc, _ := b.post("/allow/add", url.Values{"pattern": {"historian.plant.test"}, "ports": {""}, "comment": {"the historian"}})
	if code != http.StatusSeeOther || !strings.HasPrefix(loc, "/allow?note=added") {
		t.Fatalf("add: %d %q", code, loc)
	}
	if l.query(t, "historian.plant.test") != dns.RcodeSuccess {
		t.Error("historian.plant.test does not resolve after the add")
	}
	_, body := b.get(loc)
	if !strings.Contains(body, "historian.plant.test") || !strings.Contains(body, "console user alice: the historian") {
		t.Errorf("allow page after add lacks the rule or its note:\n%s", body)
	}
	var byAlice bool
	err := l.api.Records(context.Background(), adminapi.Query{Filter: audit.Filter{Kind: audit.KindConfig}}, func(r *audit.Record) error {
		byAlice = byAlice || (r.User == "alice" && strings.Contains(r.Change, "+historian.plant.test"))
		return nil
	})
	if err != nil || !byAlice {
		t.Errorf("no config record by alice (%v)", err)
	}

	before := l.rules(t)
	for _, bad := range []url.Values{
		{"pattern": {"a.*.test"}},
		{"pattern": {"ok.test"}, "ports": {"abc"}},
		{"pattern": {"ok.test"}, "ports": {"70000"}},
		{"pattern": {"ok.test"}, "from": {"not-a-cidr"}},
		{"pattern": {""}},
		{"pattern": {strings.Repeat("a", 300) + ".test"}},
	} {
		b.get("/allow")
		code, _, body := b.post("/allow/add", bad)
		if code != http.StatusUnprocessableEntity || !strings.Contains(body, "nothing changed") {
			t.Errorf("add %v: %d, want 422 saying nothing changed", bad, code)
		}
	}
	if after := l.rules(t); strings.Join(after, "\n") != strings.Join(before, "\n") {
		t.Errorf("refused adds changed the rules: %q → %q", before, after)
	}

	b.get("/allow")
	if code, _, body := b.post("/allow/remove", url.Values{"pattern": {"*.azure.test"}}); code != http.StatusConflict || !strings.Contains(body, "lnm.conf") {
		t.Errorf("remove of a config-file rule: %d, want 409 naming the file", code)
	}
	b.get("/allow")
	if code, _, _ := b.post("/allow/remove", url.Values{"pattern": {"historian.plant.test"}}); code != http.StatusSeeOther {
		t.Errorf("remove: %d", code)
	}
	if l.query(t, "historian.plant.test") != dns.RcodeNameError {
		t.Error("historian.plant.test still resolves after remove")
	}
}

// TestViewerRefused: a viewer's changes are refused by the server, with a valid session and
// CSRF token, and change nothing; the pages offer no change forms.
func TestViewerRefused(t *testing.T) {
	l := newLab(t)
	b := l.browser(t)
	if b.signIn("victor", password) != http.StatusSeeOther {
		t.Fatal("sign in")
	}
	_, body := b.get("/allow")
	if strings.Contains(body, `action="/allow/add"`) {
		t.Error("the viewer's allow page offers the add form")
	}
	before := l.rules(t)
	code, _, body := b.post("/allow/add", url.Values{"pattern": {"evil.test"}})
	if code != http.StatusForbidden || !strings.Contains(body, "role viewer") {
		t.Errorf("viewer add: %d", code)
	}
	if code, _, _ := b.post("/allow/remove", url.Values{"pattern": {"*.azure.test"}}); code != http.StatusForbidden {
		t.Errorf("viewer remove: %d, want 403", code)
	}
	if code, _, _ := b.post("/learn/mode", url.Values{"mode": {"learn"}}); code != http.StatusForbidden {
		t.Errorf("viewer mode: %d, want 403", code)
	}
	if after := l.rules(t); strings.Join(after, "\n") != strings.Join(before, "\n") {
		t.Errorf("rules changed: %q → %q", before, after)
	}
	if _, st, err := l.api.Status(context.Background()); err != nil || st.Mode != "enforce" {
		t.Errorf("mode after the viewer's try: %v %v", st, err)
	}
}

// TestNoCSRF: an admin's change without the session's token, or with a wrong one, is
// refused and changes nothing.
func TestNoCSRF(t *testing.T) {
	l := newLab(t)
	b := l.browser(t)
	if b.signIn("alice", password) != http.StatusSeeOther {
		t.Fatal("sign in")
	}
	before := l.rules(t)
	for _, tok := range []string{"", "forged"} {
		code, _, body := b.post("/allow/add", url.Values{"pattern": {"evil.test"}, "csrf": {tok}})
		if code != http.StatusForbidden || !strings.Contains(body, "CSRF") {
			t.Errorf("add with token %q: %d, want 403", tok, code)
		}
		if code, _, _ := b.post("/learn/mode", url.Values{"mode": {"learn"}, "csrf": {tok}}); code != http.StatusForbidden {
			t.Errorf("mode with token %q: %d, want 403", tok, code)
		}
	}
	if after := l.rules(t); strings.Join(after, "\n") != strings.Join(before, "\n") {
		t.Errorf("rules changed: %q → %q", before, after)
	}
	if _, st, _ := l.api.Status(context.Background()); st.Mode != "enforce" {
		t.Errorf("mode changed to %s", st.Mode)
	}
}

// TestMode: an admin switches to learn and back; each switch is recorded with the user.
func TestMode(t *testing.T) {
	l := newLab(t)
	b := l.browser(t)
	if b.signIn("alice", password) != http.StatusSeeOther {
		t.Fatal("sign in")
	}
	b.get("/learn")
	if code, _, _ := b.post("/learn/mode", url.Values{"mode": {"learn"}}); code != http.StatusSeeOther {
		t.Fatalf("switch to learn: %d", code)
	}
	if _, st, _ := l.api.Status(context.Background()); st.Mode != "learn" {
		t.Errorf("mode %s after the switch", st.Mode)
	}
	if code, _, body := b.post("/learn/mode", url.Values{"mode": {"chaos"}}); code != http.StatusBadRequest || !strings.Contains(body, "want learn or enforce") {
		t.Errorf("mode chaos: %d", code)
	}
	found := false
	l.api.Records(context.Background(), adminapi.Query{Filter: audit.Filter{Kind: audit.KindConfig}}, func(r *audit.Record) error {
		found = found || (r.Change == "mode learn" && r.User == "alice")
		return nil
	})
	if !found {
		t.Error("no config record of mode learn by alice")
	}
}

// TestPages: every page answers a viewer and shows what the box decided: a denied query
// appears on Devices, Names, Learn and Audit search; the export is JSON Lines.
func TestPages(t *testing.T) {
	l := newLab(t)
	l.query(t, "denied.plant.test")
	l.query(t, "api.azure.test")
	b := l.browser(t)
	if b.signIn("victor", password) != http.StatusSeeOther {
		t.Fatal("sign in")
	}
	for _, c := range []struct{ path, want string }{
		{"/", "enforce"},
		{"/", `id="chart"`},
		{"/live", "/static/live.js"},
		{"/devices", "127.0.0.1"},
		{"/names", "denied.plant.test"},
		{"/allow", "*.azure.test"},
		{"/learn", "denied.plant.test"},
		{"/audit?since=1h&verdict=deny", "denied.plant.test"},
		{"/static/console.css", "font"},
	} {
		code, body := b.get(c.path)
		if code != http.StatusOK || !strings.Contains(body, c.want) {
			t.Errorf("GET %s: %d, want 200 with %q", c.path, code, c.want)
		}
	}
	code, body := b.get("/audit?since=1h&format=jsonl")
	if code != http.StatusOK {
		t.Fatalf("export: %d", code)
	}
	lines := 0
	for line := range strings.Lines(body) {
		var r audit.Record
		if err := r.UnmarshalJSON([]byte(line)); err != nil {
			t.Fatalf("export line %q: %v", line, err)
		}
		lines++
	}
	if lines < 3 {
		t.Errorf("export has %d records, want the start and both queries", lines)
	}
}

// TestBadInput: a huge query string, a filter the admin API's parser refuses and bad
// suggestion options are answered with a clear message.
func TestBadInput(t *testing.T) {
	l := newLab(t)
	b := l.browser(t)
	if b.signIn("victor", password) != http.StatusSeeOther {
		t.Fatal("sign in")
	}
	for _, c := range []struct {
		path string
		code int
		want string
	}{
		{"/audit?name=" + strings.Repeat("a", 5000), http.StatusRequestURITooLong, "query string"},
		{"/audit?verdict=maybe", http.StatusBadRequest, "verdict"},
		{"/audit?since=yesterday", http.StatusBadRequest, "since"},
		{"/audit?name=a.*.b", http.StatusBadRequest, "name"},
		{"/live/events?client=nope", http.StatusBadRequest, "client"},
		{"/learn?collapse=1", http.StatusBadRequest, "collapse"},
		{"/nosuchpage", http.StatusNotFound, ""},
	} {
		code, body := b.get(c.path)
		if code != c.code || !strings.Contains(body, c.want) {
			t.Errorf("GET %.60s: %d, want %d with %q", c.path, code, c.code, c.want)
		}
	}
	if code, _, _ := b.post("/allow/add", url.Values{"pattern": {strings.Repeat("x", 70<<10)}}); code != http.StatusBadRequest {
		t.Errorf("70 KiB form: %d, want 400", code)
	}
}

// TestLiveEvents: the Live stream carries a denied query as it happens, with the allow link.
func TestLiveEvents(t *testing.T) {
	l := newLab(t)
	b := l.browser(t)
	if b.signIn("alice", password) != http.StatusSeeOther {
		t.Fatal("sign in")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", l.url+"/live/events?verdict=deny", nil)
	b.http.Timeout = 0
	resp, err := b.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("live: %s %s", resp.Status, resp.Header.Get("Content-Type"))
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Scan()                    // ": following"
	l.query(t, "api.azure.test") // allowed: filtered out
	l.query(t, "live.plant.test")
	for sc.Scan() {
		data, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok {
			continue
		}
		var e struct{ Name, Verdict, Allow string }
		if err := json.Unmarshal([]byte(data), &e); err != nil {
			t.Fatal(err)
		}
		if e.Name != "live.plant.test" || e.Verdict != "deny" || e.Allow != "/allow?pattern=live.plant.test" {
			t.Fatalf("first event %+v, want the denied live.plant.test with its allow link", e)
		}
		return
	}
	t.Fatalf("stream ended: %v", sc.Err())
}
