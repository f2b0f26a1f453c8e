package appliance

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/miekg/dns"

	"github.com/lnm-project/lnm/adminapi"
	"github.com/lnm-project/lnm/allowfile"
	"github.com/lnm-project/lnm/audit"
	"github.com/lnm-project/lnm/config"
	"github.com/lnm-project/lnm/internal/testkit"
)

// allowBox starts a box on loopback from a config file in a temp dir, with its admin socket
// there too. It returns the config path, the DNS address and an admin client.
func allowBox(t *testing.T) (conf, dnsAddr string, api *http.Client) {
	t.Helper()
	dnsPort, proxyPort := testkit.FreePort(t), testkit.FreePort(t)
	dir := t.TempDir()
	conf = filepath.Join(dir, "lnm.conf")
	text := fmt.Sprintf(`lnm {
    listen  127.0.0.1
    dns     %d
    proxy   %d
    parent  127.0.0.2
    admin   %s/admin.sock
    audit   %s/audit
    allow {
        # written by hand
        *.azure.test
        .contoso.test
    }
}
`, dnsPort, proxyPort, dir, dir)
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(conf)
	if err != nil {
		t.Fatal(err)
	}
	rt, err := Start(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close() })
	return conf, fmt.Sprintf("127.0.0.1:%d", dnsPort), adminClient(filepath.Join(dir, "admin.sock"))
}

// call sends one admin request and decodes a JSON answer into out (nil: ignored); it returns
// the status and the error text of a failure.
func call(t *testing.T, api *http.Client, method, path string, body, out any) (int, string) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, "http://lnm"+path, rd)
	resp, err := api.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		var e adminapi.APIError
		json.Unmarshal(data, &e)
		return resp.StatusCode, e.Error
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			t.Fatalf("%s %s: %v in %s", method, path, err, data)
		}
	}
	return resp.StatusCode, ""
}

func resolves(t *testing.T, addr, name string) bool {
	t.Helper()
	r, err := dns.Exchange(new(dns.Msg).SetQuestion(dns.Fqdn(name), dns.TypeA), addr)
	if err != nil {
		t.Fatal(err)
	}
	switch r.Rcode {
	case dns.RcodeSuccess:
		return len(r.Answer) == 1
	case dns.RcodeNameError:
		return false
	}
	t.Fatalf("%s: rcode %s", name, dns.RcodeToString[r.Rcode])
	return false
}

// TestAdminAllow adds and removes a rule through the admin API of a running box: the DNS
// answer follows, the list shows origins, notes and hits, conflicts and invalid rules are
// refused with FILE:LINE, and every change is a config record with the caller's uid.
func TestAdminAllow(t *testing.T) {
	conf, dnsAddr, api := allowBox(t)
	mpath := allowfile.PathFor(conf)
	if resolves(t, dnsAddr, "historian.plant.test") {
		t.Fatal("historian.plant.test resolves before it is added")
	}

	var ch adminapi.AllowChange
	if code, msg := call(t, api, "POST", adminapi.PathAllow, adminapi.AllowAdd{Rules: []adminapi.RuleSpec{
		{Pattern: "historian.plant.test", Comment: "MES"},
	}}, &ch); code != http.StatusOK {
		t.Fatalf("add: %d %s", code, msg)
	}
	if want := "historian.plant.test (" + mpath + ":6)"; len(ch.Added) != 1 || ch.Added[0] != want || !ch.Applied || ch.Rules != 3 {
		t.Fatalf("add answered %+v, want %q applied", ch, want)
	}
	if !resolves(t, dnsAddr, "historian.plant.test") {
		t.Fatal("historian.plant.test does not resolve after add")
	}
	resolves(t, dnsAddr, "api.azure.test")
	resolves(t, dnsAddr, "x.api.azure.test")

	var list adminapi.AllowList
	call(t, api, "GET", adminapi.PathAllow, nil, &list)
	if !list.Live || list.Config != conf || list.Managed != mpath || len(list.Rules) != 3 {
		t.Fatalf("list %+v", list)
	}
	uid := os.Getuid()
	byRule := map[string]adminapi.AllowRule{}
	for _, r := range list.Rules {
		byRule[r.Rule] = r
	}
	h := byRule["historian.plant.test"]
	if !h.Managed || h.Origin != mpath+":6" || h.Hits != 1 || h.LastHit.IsZero() || len(h.Note) != 1 ||
		!strings.HasPrefix(h.Note[0], fmt.Sprintf("added by uid %d at ", uid)) || !strings.HasSuffix(h.Note[0], ": MES") {
		t.Errorf("managed rule %+v", h)
	}
	if w := byRule["*.azure.test"]; w.Managed || w.Origin != conf+":10" || w.Hits != 2 {
		t.Errorf("config rule %+v, want 2 hits at %s:10", w, conf)
	}

	// Refused: nothing is written, nothing applied.
	before, _ := os.ReadFile(mpath)
	for _, tc := range []struct {
		spec adminapi.RuleSpec
		want string
	}{
		{adminapi.RuleSpec{Pattern: "x.test", Ports: []int{8883}}, mpath + `:12: rule "x.test 8883": port 8883 has no proxy listener`},
		{adminapi.RuleSpec{Pattern: "*x.test"}, `rule 2: pattern "*x.test": '*' is allowed only`},
		{adminapi.RuleSpec{Pattern: "*.azure.test"}, `rule "*.azure.test": already in the allow list at ` + conf + ":10"},
		{adminapi.RuleSpec{Pattern: "y.test", From: []string{"10.0.0.1/8"}}, "has bits set past /8"},
	} {
		code, msg := call(t, api, "POST", adminapi.PathAllow, adminapi.AllowAdd{Rules: []adminapi.RuleSpec{{Pattern: "fine.test"}, tc.spec}}, nil)
		if code != http.StatusUnprocessableEntity || !strings.Contains(msg, tc.want) {
			t.Errorf("add %+v: %d %q, want 422 with %q", tc.spec, code, msg, tc.want)
		}
	}
	if after, _ := os.ReadFile(mpath); !bytes.Equal(before, after) {
		t.Errorf("a refused add changed the file:\n%s", after)
	}
	if resolves(t, dnsAddr, "fine.test") {
		t.Error("fine.test, part of a refused request, resolves")
	}

	code, msg := call(t, api, "DELETE", adminapi.PathAllow+"?pattern="+url.QueryEscape("*.azure.test"), nil, nil)
	if want := "rule *.azure.test is written in " + conf + ":10; edit that file"; code != http.StatusConflict || msg != want {
		t.Errorf("remove of a config rule: %d %q, want 409 %q", code, msg, want)
	}
	if code, _ := call(t, api, "DELETE", adminapi.PathAllow+"?pattern=nowhere.test", nil, nil); code != http.StatusNotFound {
		t.Errorf("remove of an unknown pattern: %d, want 404", code)
	}
	if code, _ := call(t, api, "DELETE", adminapi.PathAllow+"?pattern=a.*.test", nil, nil); code != http.StatusBadRequest {
		t.Errorf("remove of a bad pattern: %d, want 400", code)
	}
	ch = adminapi.AllowChange{}
	if code, msg := call(t, api, "DELETE", adminapi.PathAllow+"?pattern=historian.plant.test", nil, &ch); code != http.StatusOK {
		t.Fatalf("remove: %d %s", code, msg)
	}
	if len(ch.Removed) != 1 || ch.Rules != 2 || !ch.Applied {
		t.Errorf("remove answered %+v", ch)
	}
	if resolves(t, dnsAddr, "historian.plant.test") {
		t.Error("historian.plant.test still resolves after remove")
	}

	recs := getRecords(t, api, adminapi.Query{Filter: audit.Filter{Kind: audit.KindConfig}})
	var changes []string
	for _, r := range recs {
		if r.UID != nil && *r.UID == uid {
			changes = append(changes, r.Change)
		}
	}
	if len(changes) != 2 || !strings.Contains(changes[0], "+historian.plant.test") || !strings.Contains(changes[1], "-historian.plant.test") {
		t.Errorf("config records with uid %d: %q, want the add and the remove", uid, changes)
	}
}

// TestAdminAllowConcurrent sends 8 adds at once: they serialize on the file's lock, and the
// running list and the file end with all 8.
func TestAdminAllowConcurrent(t *testing.T) {
	conf, dnsAddr, api := allowBox(t)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			if code, msg := call(t, api, "POST", adminapi.PathAllow, adminapi.AllowAdd{Rules: []adminapi.RuleSpec{{Pattern: fmt.Sprintf("d%d.plant.test", i)}}}, nil); code != http.StatusOK {
				t.Errorf("add %d: %d %s", i, code, msg)
			}
		})
	}
	wg.Wait()
	c, err := config.Load(conf)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Rules) != 10 {
		t.Fatalf("the files hold %d rules, want 10", len(c.Rules))
	}
	var list adminapi.AllowList
	call(t, api, "GET", adminapi.PathAllow, nil, &list)
	if len(list.Rules) != 10 {
		t.Fatalf("the box runs %d rules, want 10", len(list.Rules))
	}
	for i := range 8 {
		if name := fmt.Sprintf("d%d.plant.test", i); !resolves(t, dnsAddr, name) {
			t.Errorf("%s does not resolve", name)
		}
	}
}

// TestAdminAllowApplyRefused: when the box cannot apply an edit (here the config file was
// changed by hand in a way only a restart applies), the request fails and the managed file is
// put back as it was: absent, then its previous text.
func TestAdminAllowApplyRefused(t *testing.T) {
	conf, dnsAddr, api := allowBox(t)
	mpath := allowfile.PathFor(conf)
	add := func(pattern string) (int, string) {
		return call(t, api, "POST", adminapi.PathAllow, adminapi.AllowAdd{Rules: []adminapi.RuleSpec{{Pattern: pattern}}}, nil)
	}
	if code, msg := add("first.plant.test"); code != http.StatusOK {
		t.Fatalf("add: %d %s", code, msg)
	}
	before, _ := os.ReadFile(mpath)
	text, _ := os.ReadFile(conf)
	if err := os.WriteFile(conf, bytes.Replace(text, []byte("listen  127.0.0.1"), []byte("listen  127.0.0.3"), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	code, msg := add("second.plant.test")
	if code != http.StatusUnprocessableEntity || !strings.Contains(msg, "changed listen; restart lnm to apply it") {
		t.Fatalf("add with a restart-only change pending: %d %q", code, msg)
	}
	if after, _ := os.ReadFile(mpath); !bytes.Equal(after, before) {
		t.Fatalf("the managed file was not restored:\n%s", after)
	}
	if resolves(t, dnsAddr, "second.plant.test") || !resolves(t, dnsAddr, "first.plant.test") {
		t.Fatal("the running list changed")
	}
	if code, _ := call(t, api, "DELETE", adminapi.PathAllow+"?pattern=first.plant.test", nil, nil); code != http.StatusUnprocessableEntity {
		t.Fatalf("remove: %d", code)
	}
	if after, _ := os.ReadFile(mpath); !bytes.Equal(after, before) {
		t.Fatalf("the managed file was not restored after remove:\n%s", after)
	}
	// With no managed file before, none after.
	os.Remove(mpath)
	if code, _ := add("third.plant.test"); code != http.StatusUnprocessableEntity {
		t.Fatalf("add: %d", code)
	}
	if _, err := os.Stat(mpath); !os.IsNotExist(err) {
		t.Fatalf("a managed file was left: %v", err)
	}
}

// TestAdminCallerUser: a request naming a console user (HeaderUser) is recorded with that
// name beside the uid, in the config record and the managed rule's note; a header that is no
// user name is refused and changes nothing.
func TestAdminCallerUser(t *testing.T) {
	conf, dnsAddr, api := allowBox(t)
	send := func(user string, body any) int {
		b, _ := json.Marshal(body)
		req, _ := http.NewRequest("POST", "http://lnm"+adminapi.PathAllow, bytes.NewReader(b))
		req.Header.Set(adminapi.HeaderUser, user)
		resp, err := api.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := send("bad name!", adminapi.AllowAdd{Rules: []adminapi.RuleSpec{{Pattern: "evil.plant.test"}}}); code != http.StatusBadRequest {
		t.Errorf("bad user header: %d, want 400", code)
	}
	if resolves(t, dnsAddr, "evil.plant.test") {
		t.Error("a refused request changed the list")
	}
	if code := send("alice", adminapi.AllowAdd{Rules: []adminapi.RuleSpec{{Pattern: "historian.plant.test", Comment: "why"}}}); code != http.StatusOK {
		t.Fatalf("add as alice: %d", code)
	}
	recs := getRecords(t, api, adminapi.Query{Filter: audit.Filter{Kind: audit.KindConfig}})
	found := false
	for _, r := range recs {
		found = found || (r.User == "alice" && r.UID != nil && strings.Contains(r.Change, "+historian.plant.test"))
	}
	if !found {
		t.Errorf("no config record with user alice and a uid among %d records", len(recs))
	}
	data, err := os.ReadFile(strings.TrimSuffix(conf, ".conf") + ".allow")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), "console user alice: why") {
		t.Errorf("managed file has no note naming alice:\n%s", data)
	}
}
