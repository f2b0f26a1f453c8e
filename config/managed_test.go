package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lnm-project/lnm/allowfile"
	"github.com/lnm-project/lnm/allowlist"
	"github.com/lnm-project/lnm/internal/atomicfile"
)

const managedTestConf = `lnm {
    listen 127.0.0.1
    proxy  443 8883
    allow {
        # hand-written, never rewritten
        *.azure.test
        mqtt.vendor.test 8883
    }
}
`

// writeConf writes a config into a fresh directory and returns its path.
func writeConf(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "lnm.conf")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func rule(t *testing.T, text string) allowlist.Rule {
	t.Helper()
	entries, err := parseManaged("test", []byte(text))
	if err != nil || len(entries) != 1 {
		t.Fatalf("rule %q: %v", text, err)
	}
	r := entries[0].Rule
	r.Origin = ""
	return r
}

func fixedNow(m *allowfile.File) {
	m.Now = func() time.Time { return time.Date(2026, 11, 28, 7, 0, 0, 0, time.UTC) }
}

// TestManagedRoundTrip adds rules through EditManaged, checks the exact text written, then
// that Load reads them back with managed origins and the notes survive a second edit.
func TestManagedRoundTrip(t *testing.T) {
	conf := writeConf(t, managedTestConf)
	uid := 1000
	next, err := EditManaged(conf, func(m *allowfile.File) error {
		fixedNow(m)
		if len(m.Rules()) != 0 || len(m.ConfigRules()) != 2 {
			t.Fatalf("fresh managed file: %d rules, %d config rules", len(m.Rules()), len(m.ConfigRules()))
		}
		if err := m.Add(rule(t, "historian.plant.test 443 from 198.18.3.0/24 to 198.18.4.20:443"), "MES\nhistorian", &uid); err != nil {
			return err
		}
		return m.Add(rule(t, ".contoso.test"), "", nil)
	})
	if err != nil {
		t.Fatal(err)
	}
	mpath := allowfile.PathFor(conf)
	got, err := os.ReadFile(mpath)
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Join(allowfile.Header(), "\n") + `

# added by uid 1000 at 2026-11-28T07:00:00Z: MES historian
historian.plant.test 443 from 198.18.3.0/24 to 198.18.4.20:443

# added at 2026-11-28T07:00:00Z
.contoso.test
`
	if string(got) != want {
		t.Fatalf("managed file:\n%s\nwant:\n%s", got, want)
	}
	if n := len(next.Rules); n != 4 {
		t.Fatalf("EditManaged returned %d rules, want 4", n)
	}

	c, err := Load(conf)
	if err != nil {
		t.Fatal(err)
	}
	var origins []string
	for _, r := range c.Rules {
		origins = append(origins, r.String()+" @ "+strings.TrimPrefix(r.Origin, filepath.Dir(conf)+"/"))
	}
	wantOrigins := []string{
		"*.azure.test @ lnm.conf:6",
		"mqtt.vendor.test 8883 @ lnm.conf:7",
		"historian.plant.test 443 from 198.18.3.0/24 to 198.18.4.20:443 @ lnm.allow:6",
		".contoso.test @ lnm.allow:9",
	}
	if strings.Join(origins, "\n") != strings.Join(wantOrigins, "\n") {
		t.Fatalf("Load rules:\n%s\nwant:\n%s", strings.Join(origins, "\n"), strings.Join(wantOrigins, "\n"))
	}
	if s := c.Summary(); !strings.Contains(s, "# "+mpath+":9") || !strings.Contains(s, "4 rules, in match order") {
		t.Fatalf("summary does not show the managed rules:\n%s", s)
	}

	// Remove one; the other keeps its note and moves up.
	if _, err := EditManaged(conf, func(m *allowfile.File) error {
		if n := m.Remove(allowlist.Pattern{Kind: allowlist.Exact, Base: "historian.plant.test"}); n != 1 {
			t.Errorf("Remove = %d, want 1", n)
		}
		if n := m.Remove(allowlist.Pattern{Kind: allowlist.Wildcard, Base: "azure.test"}); n != 0 {
			t.Errorf("Remove of a config rule = %d, want 0", n)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	got, _ = os.ReadFile(mpath)
	want = strings.Join(allowfile.Header(), "\n") + "\n\n# added at 2026-11-28T07:00:00Z\n.contoso.test\n"
	if string(got) != want {
		t.Fatalf("after remove:\n%s\nwant:\n%s", got, want)
	}
}

// TestManagedLoadErrors: errors in or caused by the managed file carry its FILE:LINE, and a
// duplicate across the two files names both.
func TestManagedLoadErrors(t *testing.T) {
	for _, tc := range []struct {
		name, managed, want string
	}{
		{"duplicate across files", "# note\nmqtt.vendor.test 8883\n",
			"lnm.allow:2: duplicate rule \"mqtt.vendor.test 8883\" (first at DIR/lnm.conf:7)"},
		{"bad pattern", "\n\n*example.test\n", "lnm.allow:3: pattern \"*example.test\": '*' is allowed only"},
		{"port without proxy", "a.test 1883\n", "lnm.allow:1: rule \"a.test 1883\": port 1883 has no proxy listener (proxy listens on 443 8883)"},
		{"block", "a.test {\n}\n", "lnm.allow:1: a rule takes no block"},
		{"stray brace", "a.test\n}\n", "lnm.allow:2: unexpected \"}\": lnm.allow holds one rule per line"},
		{"bad from", "a.test from 10.0.0.1/8\n", "lnm.allow:1: from: 10.0.0.1/8 has bits set past /8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conf := writeConf(t, managedTestConf)
			dir := filepath.Dir(conf)
			if err := os.WriteFile(allowfile.PathFor(conf), []byte(tc.managed), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := Load(conf)
			want := strings.ReplaceAll(tc.want, "DIR", dir)
			if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, want)) {
				t.Fatalf("Load = %v, want an error containing %q", err, filepath.Join(dir, want))
			}
			// An edit of a broken file is refused and leaves it as it was.
			_, err = EditManaged(conf, func(m *allowfile.File) error { return nil })
			if err == nil {
				t.Fatal("EditManaged of a broken managed file succeeded")
			}
			if got, _ := os.ReadFile(allowfile.PathFor(conf)); string(got) != tc.managed {
				t.Fatalf("file changed to %q", got)
			}
		})
	}
}

// TestManagedEditRefused: a duplicate, a rule that does not validate, and the callback's own
// error all leave the file as it was.
func TestManagedEditRefused(t *testing.T) {
	conf := writeConf(t, managedTestConf)
	if _, err := EditManaged(conf, func(m *allowfile.File) error {
		return m.Add(rule(t, "a.test"), "first", nil)
	}); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(allowfile.PathFor(conf))
	for _, tc := range []struct {
		name string
		edit func(m *allowfile.File) error
		want string
	}{
		{"duplicate of config rule", func(m *allowfile.File) error { return m.Add(rule(t, "*.azure.test"), "", nil) },
			"already in the allow list at " + conf + ":6"},
		{"duplicate of managed rule", func(m *allowfile.File) error { return m.Add(rule(t, "a.test"), "", nil) },
			"already in the allow list at " + allowfile.PathFor(conf) + ":6"},
		{"duplicate within the edit", func(m *allowfile.File) error {
			m.Add(rule(t, "b.test 443"), "", nil)
			return m.Add(rule(t, "b.test 443"), "", nil)
		}, "already in the allow list earlier in this change"},
		{"port without proxy", func(m *allowfile.File) error { return m.Add(rule(t, "c.test 9999"), "", nil) },
			"port 9999 has no proxy listener"},
		{"callback error", func(m *allowfile.File) error { m.Remove(rule(t, "a.test").Pattern); return errors.New("no") }, "no"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := EditManaged(conf, tc.edit)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("EditManaged = %v, want an error containing %q", err, tc.want)
			}
			if after, _ := os.ReadFile(allowfile.PathFor(conf)); string(after) != string(before) {
				t.Fatalf("file changed:\n%s", after)
			}
		})
	}
}

// TestManagedAtomicWrite reads the file continuously while it is rewritten: every read is a
// whole file that parses, never a prefix or an empty file.
func TestManagedAtomicWrite(t *testing.T) {
	conf := writeConf(t, managedTestConf)
	mpath := allowfile.PathFor(conf)
	write := func(i int) {
		t.Helper()
		_, err := EditManaged(conf, func(m *allowfile.File) error {
			fixedNow(m)
			m.Remove(allowlist.Pattern{Base: allowlist.Name("v" + strings.Repeat("x", i%5+1) + ".test")})
			return m.Add(allowlist.Rule{Pattern: allowlist.Pattern{Base: allowlist.Name("r" + strings.Repeat("y", i) + ".test")}}, strings.Repeat("long comment ", 200), nil)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	write(0)
	stop := make(chan struct{})
	done := make(chan []string)
	go func() {
		var torn []string
		for {
			select {
			case <-stop:
				done <- torn
				return
			default:
			}
			b, err := os.ReadFile(mpath)
			if err != nil {
				torn = append(torn, err.Error())
				continue
			}
			if _, err := parseManaged(mpath, b); err != nil || !strings.HasSuffix(string(b), ".test\n") {
				torn = append(torn, string(b))
			}
		}
	}()
	for i := 1; i < 40; i++ {
		write(i)
	}
	close(stop)
	if torn := <-done; len(torn) > 0 {
		t.Fatalf("%d reads saw a partial file, first: %q", len(torn), torn[0])
	}
	if stale, _ := filepath.Glob(filepath.Join(filepath.Dir(mpath), atomicfile.TempPrefix(mpath)+"*")); len(stale) > 0 {
		t.Fatalf("temp files left: %v", stale)
	}
}
