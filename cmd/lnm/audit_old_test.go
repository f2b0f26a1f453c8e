package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lnm-project/lnm/internal/testkit"
)

// oldLog is a log the box wrote before the DNS and connection paths shared one vocabulary:
// a query and a stream allowed, a name denied as not listed, a rule's `from` leaving the
// device out (then "source_not_allowed" with the rule), and a query and a connection from
// outside `sources` (then "source_refused" and "source_not_allowed" without a rule).
const oldLog = "testdata/audit_old"

// TestAuditQueryOldLog: a log written by the previous version reads as it was written, in
// today's reason words, and the filters find its records.
func TestAuditQueryOldLog(t *testing.T) {
	fixClock(t)
	dir := oldLog
	files, _ := filepath.Glob(filepath.Join(oldLog, "audit-*.jsonl"))
	if len(files) != 1 {
		t.Fatalf("fixture segments %v, want one", files)
	}
	raw, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}

	t.Run("json in today's words", func(t *testing.T) {
		code, stdout, stderr := runCLI(t, "audit", "query", "--dir", dir, "--json")
		if code != 0 || stderr != "" {
			t.Fatalf("exit %d\n%s", code, stderr)
		}
		// Every record byte for byte as written, but for the renamed reasons.
		renamed := map[int][2]string{
			7:  {`"reason":"source_not_allowed"`, `"reason":"from_mismatch"`},      // dns, a rule's from
			8:  {`"reason":"source_not_allowed"`, `"reason":"from_mismatch"`},      // conn, a rule's from
			9:  {`"reason":"source_refused"`, `"reason":"source_not_allowed"`},     // dns, outside sources
			10: {`"reason":"source_not_allowed"`, `"reason":"source_not_allowed"`}, // conn, outside sources
		}
		want := strings.Split(strings.TrimSuffix(string(raw), "\n"), "\n")
		for seq, r := range renamed {
			if !strings.Contains(want[seq-1], r[0]) {
				t.Fatalf("fixture record %d has no %s: %s", seq, r[0], want[seq-1])
			}
			want[seq-1] = strings.Replace(want[seq-1], r[0], r[1], 1)
		}
		got := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
		if len(got) != len(want) {
			t.Fatalf("%d records, want %d:\n%s", len(got), len(want), stdout)
		}
		for i := range want {
			if got[i] != want[i] {
				t.Errorf("record %d:\n got %s\nwant %s", i+1, got[i], want[i])
			}
		}
	})
	t.Run("table", func(t *testing.T) {
		code, stdout, stderr := runCLI(t, "audit", "query", "--dir", dir)
		if code != 0 || stderr != "" {
			t.Fatalf("exit %d\n%s", code, stderr)
		}
		testkit.Golden(t, "testdata/audit_query_old_log.golden", stdout)
	})
	for _, tc := range []struct {
		name string
		args []string
		seqs string
	}{
		{"all", nil, "1 2 3 4 5 6 7 8 9 10 11"},
		{"deny includes refused", []string{"--verdict", "deny"}, "5 6 7 8 9 10"},
		{"refused", []string{"--verdict", "refused"}, "9"},
		{"allow", []string{"--verdict", "allow"}, "2 3 4"},
		{"denied connections", []string{"--kind", "conn", "--verdict", "deny"}, "6 8 10"},
		{"outside sources by client", []string{"--client", "127.0.0.3"}, "9 10"},
		{"by name", []string{"--name", "plc.vendor.test"}, "7 8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := runCLI(t, append([]string{"audit", "query", "--dir", dir, "--json"}, tc.args...)...)
			if code != 0 {
				t.Fatalf("exit %d\n%s", code, stderr)
			}
			if got := printedSeqs(t, stdout); got != tc.seqs {
				t.Errorf("printed seqs %s, want %s", got, tc.seqs)
			}
		})
	}
}
