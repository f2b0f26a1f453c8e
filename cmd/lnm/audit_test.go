package main

import (
	"bytes"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lnm-project/lnm/adminapi"
	"github.com/lnm-project/lnm/audit"
	"github.com/lnm-project/lnm/internal/auditview"
	"github.com/lnm-project/lnm/internal/testkit"
)

func TestRenderTable(t *testing.T) {
	recs := boxRecords()
	rd := &auditview.Renderer{Loc: testZone, Queries: map[uint64]*audit.Record{}}
	for i := range recs {
		if recs[i].Kind == audit.KindDNS {
			rd.Queries[recs[i].Seq] = &recs[i]
		}
	}
	var rows []auditview.Row
	for i := range recs[1:] {
		rows = append(rows, rd.Row(&recs[1+i]))
	}
	var b bytes.Buffer
	if err := auditview.WriteTable(&b, rows); err != nil {
		t.Fatal(err)
	}
	testkit.Golden(t, "testdata/audit_table.golden", b.String())
	if strings.ContainsAny(b.String(), "\x1b\r") {
		t.Error("a control character from a record reached the table")
	}
	if n := strings.Count(b.String(), "\n"); n != len(rows)+1 {
		t.Errorf("%d lines for %d records and a header: a record broke its line", n, len(rows))
	}
}

// TestRenderLink: a linked query's time carries its date only when its local day differs
// from the connection's.
func TestRenderLink(t *testing.T) {
	q := earlyQuery
	rd := &auditview.Renderer{Loc: testZone, Queries: map[uint64]*audit.Record{3: &q}}
	conn := &audit.Record{Kind: audit.KindConn, QuerySeq: 3}

	// Two UTC days, one CET day.
	q.Time = time.Date(2026, 2, 28, 23, 0, 0, 900_000_000, time.UTC)
	conn.Time = time.Date(2026, 3, 1, 0, 0, 0, 100_000_000, time.UTC)
	if got, want := rd.Row(conn)[auditview.ColDetail], "query #3 A NOERROR -> 198.18.3.1 at 00:00:00.900 (59m59.2s before)"; !strings.Contains(got, want) {
		t.Errorf("same local day:\n got %s\nwant %s", got, want)
	}
	// One UTC day, two CET days.
	q.Time = time.Date(2026, 2, 28, 22, 59, 59, 900_000_000, time.UTC)
	conn.Time = time.Date(2026, 2, 28, 23, 0, 0, 100_000_000, time.UTC)
	if got, want := rd.Row(conn)[auditview.ColDetail], "query #3 A NOERROR -> 198.18.3.1 at 2026-02-28 23:59:59.900 (200ms before)"; !strings.Contains(got, want) {
		t.Errorf("another local day:\n got %s\nwant %s", got, want)
	}
	conn.QuerySeq = 4
	if got, want := rd.Row(conn)[auditview.ColDetail], "query #4 (not found)"; !strings.Contains(got, want) {
		t.Errorf("missing: got %s, want %s", got, want)
	}
}

func TestRenderSize(t *testing.T) {
	for _, tc := range []struct {
		n    int64
		want string
	}{{0, "0B"}, {1023, "1023B"}, {1024, "1.0KiB"}, {35_389, "34.6KiB"}, {10 << 20, "10.0MiB"}, {3 << 30, "3.0GiB"}, {5 << 50, "5.0PiB"}, {5 << 60, "5120.0PiB"}} {
		if got := auditview.Size(tc.n); got != tc.want {
			t.Errorf("size(%d) = %q, want %q", tc.n, got, tc.want)
		}
	}
}

func TestAuditQueryTableFromBox(t *testing.T) {
	fixClock(t)
	fb := startFakeBox(t, &fakeBox{records: boxRecords()})
	conf := writeConfig(t, fb.socket, "off")
	// --since excludes earlyQuery (seq 3), which the sni_mismatch connection links to: the
	// CLI must fetch it by seq.
	code, stdout, stderr := runCLI(t, "audit", "query", "--config", conf, "--since", "15m")
	if code != 0 || stderr != "" {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	testkit.Golden(t, "testdata/audit_query_table.golden", stdout)
	reqs := fb.requests()
	if len(reqs) != 2 {
		t.Fatalf("requests %q, want the query and one lookup of linked queries", reqs)
	}
	if v, _ := url.ParseQuery(reqs[1]); v.Get("seq") != "2,3" || len(v) != 1 {
		t.Errorf("linked queries asked as %q, want seq=2,3 alone", reqs[1])
	}
	if !strings.Contains(stdout, "query #3 A NOERROR -> 198.18.3.1 at 10:08:00.000 (7m5.25s before)") {
		t.Error("the fetched query is not shown")
	}
	if !strings.Contains(stdout, "query #2 (not found)") {
		t.Error("an evicted linked query is not said to be missing")
	}
}

func TestAuditQueryJSON(t *testing.T) {
	fixClock(t)
	fb := startFakeBox(t, &fakeBox{records: boxRecords()})
	conf := writeConfig(t, fb.socket, "off")
	code, stdout, stderr := runCLI(t, "audit", "query", "--config", conf, "--json")
	if code != 0 || stderr != "" {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	testkit.Golden(t, "testdata/audit_query.jsonl.golden", stdout)
	var want bytes.Buffer
	for _, r := range boxRecords() {
		want.Write(append(r.AppendJSON(nil), '\n'))
	}
	if stdout != want.String() {
		t.Error("--json is not exactly the records' AppendJSON lines")
	}
	if len(fb.requests()) != 1 {
		t.Errorf("--json made %d requests; it needs no linked queries", len(fb.requests()))
	}
}

// TestAuditQueryFilters checks what each flag sends to the box and which records come back.
func TestAuditQueryFilters(t *testing.T) {
	fixClock(t)
	fb := startFakeBox(t, &fakeBox{records: boxRecords()})
	conf := writeConfig(t, fb.socket, "off")
	for _, tc := range []struct {
		name string
		args []string
		sent url.Values
		seqs string // the seqs printed
	}{
		{"none", nil, url.Values{}, "3 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25"},
		{"relative since", []string{"--since", "15m"}, url.Values{"since": {"2026-03-01T09:15:00Z"}}, "10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25"},
		{"days", []string{"--since", "1d", "--until", "2s"}, url.Values{"since": {"2026-02-28T09:30:00Z"}, "until": {"2026-03-01T09:29:58Z"}}, "3 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25"},
		{"absolute range", []string{"--since", "2026-03-01T10:15:04+01:00", "--until", "2026-03-01T09:15:06.000Z"},
			url.Values{"since": {"2026-03-01T09:15:04Z"}, "until": {"2026-03-01T09:15:06Z"}}, "17 18 19 20"},
		{"local time", []string{"--since", "2026-03-01 10:15:08"}, url.Values{"since": {"2026-03-01T09:15:08Z"}}, "24 25"},
		{"client cidr", []string{"--client", "198.18.3.21/32", "--kind", "conn"}, url.Values{"client": {"198.18.3.21/32"}, "kind": {"conn"}}, "20 22"},
		{"client v6", []string{"--client", "fd00:3::20"}, url.Values{"client": {"fd00:3::20/128"}}, "16 24"},
		{"name wildcard", []string{"--name", "*.vendor.test"}, url.Values{"name": {"*.vendor.test"}}, "16 17"},
		{"deny includes refused", []string{"--verdict", "deny"}, url.Values{"verdict": {"deny"}}, "15 16 21 23"},
		{"device, lower-cased", []string{"--device", "PLC-07"}, url.Values{"device": {"plc-07"}}, ""},
		{"would-deny", []string{"--verdict", "would-deny"}, url.Values{"verdict": {"would-deny"}}, "17 24"},
		{"unlinked", []string{"--unlinked"}, url.Values{"unlinked": {"1"}}, "19 21 23"},
		{"limit", []string{"--limit", "2", "--kind", "dns"}, url.Values{"limit": {"2"}, "kind": {"dns"}}, "16 17"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(fb.requests())
			code, stdout, stderr := runCLI(t, append([]string{"audit", "query", "--config", conf, "--json"}, tc.args...)...)
			if code != 0 {
				t.Fatalf("exit %d\n%s", code, stderr)
			}
			sent, _ := url.ParseQuery(fb.requests()[before])
			if sent.Encode() != tc.sent.Encode() {
				t.Errorf("sent %q, want %q", sent.Encode(), tc.sent.Encode())
			}
			if got := printedSeqs(t, stdout); got != tc.seqs {
				t.Errorf("printed seqs %s, want %s", got, tc.seqs)
			}
		})
	}
}

func printedSeqs(t *testing.T, jsonl string) string {
	t.Helper()
	var seqs []string
	for _, line := range strings.Split(strings.TrimSpace(jsonl), "\n") {
		if line == "" {
			continue
		}
		var r audit.Record
		if err := r.UnmarshalJSON([]byte(line)); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		seqs = append(seqs, strconv.FormatUint(r.Seq, 10))
	}
	return strings.Join(seqs, " ")
}

func TestAuditQueryBadFlags(t *testing.T) {
	conf := writeConfig(t, "/nonexistent/admin.sock", "off")
	for _, tc := range []struct {
		name   string
		args   []string
		stderr string
	}{
		{"since word", []string{"--since", "yesterday"}, `--since "yesterday": want a duration`},
		{"since negative", []string{"--since", "-1h"}, `--since "-1h"`},
		{"until bad date", []string{"--until", "2026-13-01"}, `--until "2026-13-01"`},
		{"since after until", []string{"--since", "1h", "--until", "2h"}, "--since 2026-03-01T08:30:00Z is not before --until 2026-03-01T07:30:00Z"},
		{"client", []string{"--client", "198.18.3"}, `--client "198.18.3": want an address or CIDR`},
		{"name", []string{"--name", "a.*.test"}, `--name: pattern "a.*.test"`},
		{"verdict", []string{"--verdict", "maybe"}, `--verdict "maybe": want allow, deny, would-deny or refused`},
		{"kind", []string{"--kind", "http"}, `--kind "http": want dns, conn, config, summary or dhcp`},
		{"device", []string{"--device", "plc.07"}, `--device "plc.07": want a host name`},
		{"unlinked dns", []string{"--unlinked", "--kind", "dns"}, "--unlinked selects conn records"},
		{"limit negative", []string{"--limit", "-3"}, "--limit -3: want 0 (all) or more"},
		{"limit word", []string{"--limit", "ten"}, "limit"},
		{"unknown flag", []string{"--verbose"}, "verbose"},
		{"argument", []string{"api.azure.test"}, "audit query takes no arguments"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fixClock(t)
			code, _, stderr := runCLI(t, append([]string{"audit", "query", "--config", conf}, tc.args...)...)
			if code != 2 || !strings.Contains(stderr, tc.stderr) {
				t.Fatalf("exit %d, want 2 and a message with %q\nstderr: %s", code, tc.stderr, stderr)
			}
		})
	}
	t.Run("bad config", func(t *testing.T) {
		code, _, stderr := runCLI(t, "audit", "query", "--config", "/nonexistent/lnm.conf")
		if code != 2 || !strings.Contains(stderr, "/nonexistent/lnm.conf") {
			t.Fatalf("exit %d\n%s", code, stderr)
		}
	})
}

func TestAuditParseWhen(t *testing.T) {
	fixClock(t)
	for _, tc := range []struct {
		in   string
		want string // RFC 3339 UTC, or "" for an error
	}{
		{"90s", "2026-03-01T09:28:30Z"},
		{"1h30m", "2026-03-01T08:00:00Z"},
		{"7d", "2026-02-22T09:30:00Z"},
		{"2026-03-01T10:00:00+01:00", "2026-03-01T09:00:00Z"},
		{"2026-03-01T09:00:00.250Z", "2026-03-01T09:00:00.25Z"},
		{"2026-03-01", "2026-02-28T23:00:00Z"}, // local midnight in CET
		{"2026-03-01 08:00", "2026-03-01T07:00:00Z"},
		{"2026-03-01T08:00:01", "2026-03-01T07:00:01Z"},
		{"0s", ""},
		{"-5m", ""},
		{"0d", ""},
		{"1.5d", ""},
		{"now", ""},
		{"", ""},
	} {
		got, err := parseWhen(tc.in, clock.now())
		switch {
		case tc.want == "" && err == nil:
			t.Errorf("%q: got %v, want an error", tc.in, got)
		case tc.want != "" && (err != nil || got.UTC().Format(time.RFC3339Nano) != tc.want):
			t.Errorf("%q: got %v (%v), want %s", tc.in, got.UTC(), err, tc.want)
		}
	}
}

// writeLog writes records to an audit log directory with the audit package, as a box would;
// the log numbers them from 1. The fixed records are old: retention must keep them.
func writeLog(t *testing.T, dir string, recs []audit.Record) {
	t.Helper()
	l, err := audit.Open(audit.Config{Dir: dir, MaxAge: 100 * 365 * 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	for i := range recs {
		r := recs[i]
		if err := l.Append(&r); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}

// dirRecords are boxRecords renumbered from 1, as a log that starts empty stores them, with
// their links kept; the link to the evicted seq 2 becomes one to seq 999, never written.
func dirRecords() []audit.Record {
	recs := boxRecords()
	newSeq := map[uint64]uint64{}
	for i := range recs {
		newSeq[recs[i].Seq] = uint64(i + 1)
	}
	for i := range recs {
		recs[i].Seq = 0
		if q := recs[i].QuerySeq; q != 0 {
			if recs[i].QuerySeq = newSeq[q]; recs[i].QuerySeq == 0 {
				recs[i].QuerySeq = 999
			}
		}
	}
	return recs
}

func TestAuditQueryDir(t *testing.T) {
	fixClock(t)
	dir := filepath.Join(t.TempDir(), "audit")
	recs := dirRecords()
	writeLog(t, dir, recs)

	t.Run("json", func(t *testing.T) {
		code, stdout, stderr := runCLI(t, "audit", "query", "--dir", dir, "--json")
		if code != 0 || stderr != "" {
			t.Fatalf("exit %d\n%s", code, stderr)
		}
		var want bytes.Buffer
		for i, r := range recs {
			r.Seq = uint64(i + 1)
			want.Write(append(r.AppendJSON(nil), '\n'))
		}
		if stdout != want.String() {
			t.Errorf("--dir --json:\n%s\nwant\n%s", stdout, want.String())
		}
	})
	t.Run("table", func(t *testing.T) {
		// No config at all: --dir needs none. --since leaves the early query out of the
		// records, so the table finds it in the files by seq.
		code, stdout, stderr := runCLI(t, "audit", "query", "--dir", dir, "--since", "15m", "--config", "/nonexistent/lnm.conf")
		if code != 0 || stderr != "" {
			t.Fatalf("exit %d\n%s", code, stderr)
		}
		testkit.Golden(t, "testdata/audit_query_dir.golden", stdout)
		if !strings.Contains(stdout, "query #1 A NOERROR -> 198.18.3.1 at 10:08:00.000 (7m5.25s before)") {
			t.Error("the linked query outside --since was not found in the files")
		}
	})
	t.Run("limit and filters", func(t *testing.T) {
		code, stdout, stderr := runCLI(t, "audit", "query", "--dir", dir, "--json", "--limit", "2", "--verdict", "deny")
		if code != 0 {
			t.Fatalf("exit %d\n%s", code, stderr)
		}
		if got := printedSeqs(t, stdout); got != "13 15" {
			t.Errorf("newest two denials: seqs %s, want 13 15", got)
		}
	})
	t.Run("torn tail", func(t *testing.T) {
		torn := filepath.Join(t.TempDir(), "audit")
		writeLog(t, torn, recs[:3])
		segs, _ := filepath.Glob(filepath.Join(torn, "audit-*.jsonl"))
		if len(segs) != 1 {
			t.Fatalf("segments %v, want one", segs)
		}
		f, err := os.OpenFile(segs[0], os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		f.WriteString(`{"seq":4,"time":"2026-03-01T09:1`) // a crash mid-write
		f.Close()
		code, stdout, stderr := runCLI(t, "audit", "query", "--dir", torn, "--json")
		if code != 0 || printedSeqs(t, stdout) != "1 2 3" {
			t.Fatalf("exit %d, seqs %q\n%s", code, printedSeqs(t, stdout), stderr)
		}
	})
	t.Run("missing dir", func(t *testing.T) {
		code, _, stderr := runCLI(t, "audit", "query", "--dir", filepath.Join(dir, "nope"))
		if code != 1 || !strings.Contains(stderr, "nope") {
			t.Fatalf("exit %d\n%s", code, stderr)
		}
	})
}

func TestAuditQueryFallsBackToFiles(t *testing.T) {
	fixClock(t)
	dir := filepath.Join(t.TempDir(), "audit")
	writeLog(t, dir, dirRecords())
	socket := filepath.Join(socketDir(t), "admin.sock") // nothing listens

	code, stdout, stderr := runCLI(t, "audit", "query", "--config", writeConfig(t, socket, dir), "--kind", "config", "--json")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	if want := "lnm is not running or not reachable at " + socket; !strings.Contains(stderr, want) ||
		!strings.Contains(stderr, "reading the audit log in "+dir) {
		t.Errorf("stderr %q does not say it fell back to the files", stderr)
	}
	if got := printedSeqs(t, stdout); got != "2 3" {
		t.Errorf("seqs %s from the files, want 2 3", got)
	}

	t.Run("admin off", func(t *testing.T) {
		code, stdout, stderr := runCLI(t, "audit", "query", "--config", writeConfig(t, "off", dir), "--json", "--limit", "1")
		if code != 0 || printedSeqs(t, stdout) != "17" || !strings.Contains(stderr, "admin API is off") {
			t.Fatalf("exit %d, stdout %q\n%s", code, stdout, stderr)
		}
	})
	t.Run("no files either", func(t *testing.T) {
		code, stdout, stderr := runCLI(t, "audit", "query", "--config", writeConfig(t, socket, filepath.Join(dir, "nope")))
		if code != 1 || stdout != "" || !strings.Contains(stderr, "lnm is not running or not reachable at "+socket) {
			t.Fatalf("exit %d, stdout %q\n%s", code, stdout, stderr)
		}
	})
	t.Run("both off", func(t *testing.T) {
		code, _, stderr := runCLI(t, "audit", "query", "--config", writeConfig(t, "off", "off"))
		if code != 1 || !strings.Contains(stderr, "no records to read") {
			t.Fatalf("exit %d\n%s", code, stderr)
		}
	})
}

func TestAuditQueryAPIError(t *testing.T) {
	fixClock(t)
	fb := startFakeBox(t, &fakeBox{records: boxRecords()})
	// The box rejects a query the CLI let through (it cannot here, so send one by hand).
	c := adminapi.NewClient(fb.socket)
	err := c.Records(t.Context(), adminapi.Query{Filter: audit.Filter{Kind: "http"}}, func(*audit.Record) error { return nil })
	var se *adminapi.StatusError
	if !errors.As(err, &se) || se.Code != 400 || !strings.Contains(err.Error(), `kind "http": want dns, conn, config, summary or dhcp (HTTP 400)`) {
		t.Fatalf("API error: %v", err)
	}
}

func TestAuditReadRecords(t *testing.T) {
	rec := boxRecords()[1]
	line := string(rec.AppendJSON(nil)) + "\n"
	long := rec
	long.Change = strings.Repeat("x", 200<<10) // longer than the reader's buffer
	longLine := string(long.AppendJSON(nil)) + "\n"
	for _, tc := range []struct {
		name  string
		in    string
		n     int
		err   error
		other bool // some other error
	}{
		{"empty", "", 0, nil, false},
		{"whole", line + "\n" + line, 2, nil, false},
		{"long line", line + longLine + line, 3, nil, false},
		{"cut mid-record", line + line[:20], 1, adminapi.ErrCut, false},
		{"cut long line", line + longLine[:100<<10], 1, adminapi.ErrCut, false},
		{"not a record", line + "{\"seq\":1,\"time\":\"noon\"}\n", 1, nil, true},
		{"too long", strings.Repeat("x", adminapi.MaxRecordLine+100) + "\n", 0, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := 0
			err := adminapi.ReadRecords(strings.NewReader(tc.in), func(r *audit.Record) error {
				n++
				return nil
			})
			if n != tc.n || (tc.other && (err == nil || errors.Is(err, adminapi.ErrCut))) || (!tc.other && !errors.Is(err, tc.err)) {
				t.Fatalf("%d records, err %v; want %d, %v (other error: %v)", n, err, tc.n, tc.err, tc.other)
			}
		})
	}
}
