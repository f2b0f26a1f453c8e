package audit

import (
	"bytes"
	"os"
	"strings"
	"testing"
)

// TestDocExamples keeps docs/audit-records.md honest: every example record re-encodes to
// exactly itself, and every segment name in the file layout parses as labelled.
func TestDocExamples(t *testing.T) {
	doc, err := os.ReadFile("../docs/audit-records.md")
	if err != nil {
		t.Fatal(err)
	}
	block := func(fence string) []string {
		_, rest, ok := strings.Cut(string(doc), fence+"\n")
		if !ok {
			t.Fatalf("no %s block", fence)
		}
		body, _, _ := strings.Cut(rest, "```")
		return strings.Split(strings.TrimSpace(body), "\n")
	}

	kinds := map[Kind]bool{}
	for _, line := range block("```jsonl") {
		t.Run(line[:min(len(line), 40)], func(t *testing.T) {
			var r Record
			if err := r.UnmarshalJSON([]byte(line)); err != nil {
				t.Fatal(err)
			}
			if got := r.AppendJSON(nil); !bytes.Equal(got, []byte(line)) {
				t.Fatalf("re-encoded differently:\n doc %s\ncode %s", line, got)
			}
			kinds[r.Kind] = true
		})
	}
	for _, k := range []Kind{KindDNS, KindConn, KindConfig, KindSummary, KindDHCP} {
		if !kinds[k] {
			t.Errorf("no example of kind %s", k)
		}
	}

	for _, line := range block("```\n/var/lib/lnm/audit/") {
		fields := strings.Fields(line)
		if len(fields) != 2 {
			t.Fatalf("layout line %q", line)
		}
		s, ok := parseSegmentName(fields[0])
		if !ok || s.sealed != (fields[1] == "sealed") {
			t.Errorf("%s: parsed %+v, %v; the doc says %s", fields[0], s, ok, fields[1])
		}
	}
}
