package allowfile

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/lnm-project/lnm/allowlist"
)

func TestPathFor(t *testing.T) {
	for in, want := range map[string]string{
		"/etc/lnm/lnm.conf":     "/etc/lnm/lnm.allow",
		"lnm.conf":              "lnm.allow",
		"/etc/lnm/box.v2.conf":  "/etc/lnm/box.v2.allow",
		"/etc/lnm/lnm":          "/etc/lnm/lnm.allow",
		"/etc/lnm.d/.hidden":    "/etc/lnm.d/.hidden.allow",
		"relative/dir/lnm.conf": "relative/dir/lnm.allow",
	} {
		if got := PathFor(in); got != want {
			t.Errorf("PathFor(%q) = %q, want %q", in, got, want)
		}
	}
}

func rule(t *testing.T, text string) allowlist.Rule {
	t.Helper()
	f := strings.Fields(text)
	r, err := allowlist.ParseRule(f[0], f[1:])
	if err != nil {
		t.Fatalf("rule %q: %v", text, err)
	}
	return r
}

// TestAddDuplicates: a rule already in the config file or the managed file is refused with
// ErrDuplicateRule; a rule written in another order is still the same rule.
func TestAddDuplicates(t *testing.T) {
	if err := (&File{}).Add(rule(t, "*.azure.test"), "", nil); err != nil {
		t.Fatal(err)
	}
	f := New("lnm.allow", nil, []allowlist.Rule{rule(t, "d.test")})
	if err := f.Add(rule(t, "d.test"), "", nil); !errors.Is(err, ErrDuplicateRule) {
		t.Fatalf("Add of a config rule = %v, want ErrDuplicateRule", err)
	}
	r := allowlist.Rule{Pattern: allowlist.Pattern{Base: "x.test"}, Ports: []uint16{8883, 443},
		From: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("10.0.0.0/16")}}
	if err := f.Add(r, "", nil); err != nil {
		t.Fatal(err)
	}
	if got := f.Rules()[0].Rule.String(); got != "x.test 443 8883 from 10.0.0.0/8 10.0.0.0/16" {
		t.Fatalf("added %q", got)
	}
	r.Ports = []uint16{443, 8883}
	if err := f.Add(r, "", nil); !errors.Is(err, ErrDuplicateRule) || !strings.Contains(err.Error(), "earlier in this change") {
		t.Fatalf("reordered duplicate: %v", err)
	}
	r.Ports = []uint16{443, 443}
	if err := f.Add(r, "", nil); err == nil {
		t.Fatal("a port given twice was accepted")
	}
}

// TestAddKeepsEveryOption: what Add writes says everything the rule said, `private` included.
func TestAddKeepsEveryOption(t *testing.T) {
	f := &File{Now: func() time.Time { return time.Date(2026, 12, 2, 7, 0, 0, 0, time.UTC) }}
	uid := 1000
	for _, text := range []string{
		"historian.plant.test 443 from 198.18.3.0/24 to 198.18.4.20:443",
		"opcua.plant.test 4840 private",
		".contoso.test",
	} {
		if err := f.Add(rule(t, text), "a\tnote\nover lines", &uid); err != nil {
			t.Fatal(err)
		}
	}
	want := strings.Join(Header(), "\n") + `

# added by uid 1000 at 2026-12-02T07:00:00Z: a note over lines
historian.plant.test 443 from 198.18.3.0/24 to 198.18.4.20:443

# added by uid 1000 at 2026-12-02T07:00:00Z: a note over lines
opcua.plant.test 4840 private

# added by uid 1000 at 2026-12-02T07:00:00Z: a note over lines
.contoso.test
`
	if got := string(f.Render()); got != want {
		t.Fatalf("rendered:\n%s\nwant:\n%s", got, want)
	}
	if n := f.Remove(allowlist.Pattern{Kind: allowlist.Exact, Base: "opcua.plant.test"}); n != 1 || len(f.AllowRules()) != 2 {
		t.Fatalf("Remove = %d, %d rules left", n, len(f.AllowRules()))
	}
}

// TestNoteAbove: the comment lines directly above a rule are its note; header lines, older
// versions of the syntax line and comments separated by a blank line are not.
func TestNoteAbove(t *testing.T) {
	text := strings.Join(Header(), "\n") + "\n# hand in the config file. Syntax, one rule per line: PATTERN\n\n# loose\n\n# one\n#two\na.test\n"
	lines := strings.Split(text, "\n")
	line := len(lines) - 1 // a.test, 1-based
	if got := NoteAbove(lines, line); strings.Join(got, "|") != "one|two" {
		t.Fatalf("NoteAbove = %q", got)
	}
}
