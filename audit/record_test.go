package audit

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/lnm-project/lnm/allowlist"
)

var t0 = time.Date(2026, 11, 28, 7, 30, 0, 123456789, time.UTC)

func TestRecordJSON(t *testing.T) {
	uid := 1000
	for _, tc := range []struct {
		name string
		rec  Record
		want string
	}{
		{"dns", Record{Seq: 7, Time: t0, Box: "l3", Level: 3, Kind: KindDNS,
			Client: netip.MustParseAddrPort("198.18.3.20:5353"), Name: "api.azure.test", QType: "A",
			Verdict: VerdictAllow, Rule: "*.azure.test (lnm.conf:12)", Rcode: "NOERROR",
			Answer: []netip.Addr{netip.MustParseAddr("198.18.3.1")}},
			`{"seq":7,"time":"2026-11-28T07:30:00.123Z","box":"l3","level":3,"kind":"dns","client":"198.18.3.20","name":"api.azure.test","qtype":"A","verdict":"allow","rule":"*.azure.test (lnm.conf:12)","rcode":"NOERROR","answer":["198.18.3.1"]}`},
		{"conn close with zero bytes", Record{Seq: 9, Time: t0, Box: "l3", Level: 3, Kind: KindConn, Event: EventClose, ID: 4,
			Client: netip.MustParseAddrPort("198.18.3.20:40000"), Port: 443, SNI: "api.azure.test", ALPN: []string{"h2"},
			Verdict: VerdictAllow, Reason: "eof", Upstream: netip.MustParseAddrPort("198.18.4.1:443"), Via: "parent",
			QuerySeq: 7, Flags: []string{FlagSNIMismatch}},
			`{"seq":9,"time":"2026-11-28T07:30:00.123Z","box":"l3","level":3,"kind":"conn","client":"198.18.3.20:40000","event":"close","id":4,"port":443,"sni":"api.azure.test","alpn":["h2"],"verdict":"allow","reason":"eof","upstream":"198.18.4.1:443","via":"parent","query_seq":7,"flags":["sni_mismatch"],"bytes_up":0,"bytes_down":0,"duration_ms":0}`},
		{"conn open at a parent, with its origin", Record{Seq: 12, Time: t0, Box: "l4", Level: 4, Kind: KindConn, Event: EventOpen, ID: 30,
			Client: netip.MustParseAddrPort("198.18.4.3:41000"), Port: 443, SNI: "api.azure.test", Verdict: VerdictAllow, Via: "direct",
			Origin: &Origin{Device: netip.MustParseAddrPort("198.18.3.20:40000"), Path: []string{"l3"}, ID: 4}},
			`{"seq":12,"time":"2026-11-28T07:30:00.123Z","box":"l4","level":4,"kind":"conn","client":"198.18.4.3:41000","event":"open","id":30,"port":443,"sni":"api.azure.test","verdict":"allow","via":"direct","origin":{"device":"198.18.3.20:40000","path":["l3"],"id":4}}`},
		{"config by uid", Record{Seq: 1, Time: t0, Box: "l3", Kind: KindConfig, Change: "allow add x.test", Hash: "ab12", UID: &uid},
			`{"seq":1,"time":"2026-11-28T07:30:00.123Z","box":"l3","level":0,"kind":"config","change":"allow add x.test","hash":"ab12","uid":1000}`},
		{"dns of a device with a lease", Record{Seq: 8, Time: t0, Box: "l3", Level: 3, Kind: KindDNS,
			Client: netip.MustParseAddrPort("198.18.3.20:0"), Device: "plc-07", MAC: "00:1b:1b:aa:bb:07", Name: "x.test", QType: "A",
			Verdict: VerdictDeny, Reason: "not_listed", Rcode: "NXDOMAIN"},
			`{"seq":8,"time":"2026-11-28T07:30:00.123Z","box":"l3","level":3,"kind":"dns","client":"198.18.3.20","device":"plc-07","mac":"00:1b:1b:aa:bb:07","name":"x.test","qtype":"A","verdict":"deny","reason":"not_listed","rcode":"NXDOMAIN"}`},
		{"dhcp ack", Record{Seq: 3, Time: t0, Box: "l3", Level: 3, Kind: KindDHCP, Event: "ack", Reason: "reserved",
			Client: netip.MustParseAddrPort("198.18.3.20:0"), Device: "plc-07", MAC: "00:1b:1b:aa:bb:07"},
			`{"seq":3,"time":"2026-11-28T07:30:00.123Z","box":"l3","level":3,"kind":"dhcp","client":"198.18.3.20","device":"plc-07","mac":"00:1b:1b:aa:bb:07","event":"ack","reason":"reserved"}`},
		{"hostile strings", Record{Seq: 2, Time: t0, Box: "b\"ox\n\x00\xff", Kind: KindSummary, Reason: `a\b`, Count: 5},
			`{"seq":2,"time":"2026-11-28T07:30:00.123Z","box":"b\"ox\u000a\u0000\ufffd","level":0,"kind":"summary","reason":"a\\b","count":5}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := string(tc.rec.AppendJSON(nil))
			if got != tc.want {
				t.Fatalf("AppendJSON:\n got %s\nwant %s", got, tc.want)
			}
			if !json.Valid([]byte(got)) {
				t.Fatalf("not valid JSON: %s", got)
			}
			var back Record
			if err := json.Unmarshal([]byte(got), &back); err != nil {
				t.Fatal(err)
			}
			want := tc.rec
			want.Time = want.Time.Truncate(time.Millisecond)
			if want.Kind == KindDNS {
				want.Client = netip.AddrPortFrom(want.Client.Addr(), 0)
			}
			if tc.name == "hostile strings" {
				want.Box = "b\"ox\n\x00\ufffd"
			}
			if !reflect.DeepEqual(back, want) {
				t.Fatalf("round trip:\n got %+v\nwant %+v", back, want)
			}
		})
	}
}

func TestFilter(t *testing.T) {
	wild, _ := allowlist.ParsePattern("*.azure.test")
	recs := []Record{
		{Seq: 1, Time: t0, Kind: KindDNS, Client: netip.MustParseAddrPort("198.18.3.20:0"), Name: "api.azure.test", Verdict: VerdictAllow},
		{Seq: 2, Time: t0.Add(time.Minute), Kind: KindConn, Client: netip.MustParseAddrPort("198.18.3.20:4000"), SNI: "api.azure.test", Verdict: VerdictAllow},
		{Seq: 3, Time: t0.Add(2 * time.Minute), Kind: KindConn, Client: netip.MustParseAddrPort("198.18.3.21:4000"), SNI: "evil.test", Verdict: VerdictDeny, Flags: []string{FlagUnlinked}},
		{Seq: 4, Time: t0.Add(3 * time.Minute), Kind: KindDNS, Client: netip.MustParseAddrPort("10.0.0.1:0"), Name: "x.test", Verdict: VerdictRefused},
		{Seq: 5, Time: t0.Add(4 * time.Minute), Kind: KindConfig, Change: "start"},
		{Seq: 6, Time: t0.Add(5 * time.Minute), Kind: KindDHCP, Event: "ack", Client: netip.MustParseAddrPort("198.18.3.20:0"), Device: "plc-07", MAC: "00:1b:1b:aa:bb:07"},
		{Seq: 7, Time: t0.Add(6 * time.Minute), Kind: KindDNS, Client: netip.MustParseAddrPort("198.18.3.20:0"), Device: "plc-07", Name: "x.test", Verdict: VerdictDeny},
		{Seq: 8, Time: t0.Add(7 * time.Minute), Kind: KindConn, Client: netip.MustParseAddrPort("198.18.4.3:4000"), SNI: "api.azure.test", Verdict: VerdictAllow,
			Origin: &Origin{Device: netip.MustParseAddrPort("198.18.3.20:4000"), Path: []string{"l3"}, ID: 2}},
	}
	for _, tc := range []struct {
		name string
		f    Filter
		want []uint64
	}{
		{"zero selects all", Filter{}, []uint64{1, 2, 3, 4, 5, 6, 7, 8}},
		{"since", Filter{Since: t0.Add(2 * time.Minute)}, []uint64{3, 4, 5, 6, 7, 8}},
		{"until is exclusive", Filter{Until: t0.Add(time.Minute)}, []uint64{1}},
		{"client prefix", Filter{Client: netip.MustParsePrefix("198.18.3.20/32")}, []uint64{1, 2, 6, 7}},
		{"device", Filter{Device: "plc-07"}, []uint64{6, 7}},
		{"device and kind", Filter{Device: "plc-07", Kind: KindDHCP}, []uint64{6}},
		{"another device", Filter{Device: "plc-0"}, nil},
		{"name pattern on name and sni", Filter{Name: &wild}, []uint64{1, 2, 8}},
		{"deny includes refused", Filter{Verdict: VerdictDeny}, []uint64{3, 4, 7}},
		{"kind", Filter{Kind: KindConn}, []uint64{2, 3, 8}},
		{"origin", Filter{Origin: netip.MustParsePrefix("198.18.3.20/32")}, []uint64{8}},
		{"origin prefix", Filter{Origin: netip.MustParsePrefix("198.18.3.0/24")}, []uint64{8}},
		{"another origin", Filter{Origin: netip.MustParsePrefix("198.18.3.21/32")}, nil},
		{"unlinked", Filter{Unlinked: true}, []uint64{3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []uint64
			for i := range recs {
				if tc.f.Match(&recs[i]) {
					got = append(got, recs[i].Seq)
				}
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("matched %v, want %v", got, tc.want)
			}
		})
	}
}

// BenchmarkAppendJSON encodes one record of each common shape: a conn close, and a typical
// answered DNS question, the most frequent record of all.
func BenchmarkAppendJSON(b *testing.B) {
	for _, bc := range []struct {
		name string
		rec  Record
	}{
		{"conn", Record{Seq: 9, Time: t0, Box: "l3", Level: 3, Kind: KindConn, Event: EventClose, ID: 4,
			Client: netip.MustParseAddrPort("198.18.3.20:40000"), Port: 443, SNI: "api.azure.test",
			Verdict: VerdictAllow, Reason: "eof", Upstream: netip.MustParseAddrPort("198.18.4.1:443"), Via: "parent", QuerySeq: 7}},
		{"dns", Record{Seq: 1234567, Time: t0, Box: "l3-gw", Level: 3, Kind: KindDNS,
			Client: netip.MustParseAddrPort("198.18.3.20:0"), Name: "api.example.com", QType: "A",
			Verdict: VerdictAllow, Rule: "api.example.com (lnm.allow:3)", Rcode: "NOERROR",
			Answer: []netip.Addr{netip.MustParseAddr("93.184.215.14")}}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			r := bc.rec
			buf := make([]byte, 0, 1024)
			b.ReportAllocs()
			for b.Loop() {
				buf = r.AppendJSON(buf[:0])
			}
			if !strings.HasSuffix(string(buf), "}") {
				b.Fatal(string(buf))
			}
		})
	}
}

// refTimeLayout is the layout the reference encoder formats times with.
const refTimeLayout = "2006-01-02T15:04:05.000Z07:00"

// appendJSONReference is AppendJSON as it was before it wrote times and escaped strings
// by hand: the plain, obviously right encoder the fast one must match byte for byte.
func appendJSONReference(b []byte, r *Record) []byte {
	b = append(b, `{"seq":`...)
	b = strconv.AppendUint(b, r.Seq, 10)
	b = append(b, `,"time":"`...)
	b = r.Time.UTC().AppendFormat(b, refTimeLayout)
	b = append(b, '"')
	b = refAppendString(b, "box", r.Box)
	b = append(b, `,"level":`...)
	b = strconv.AppendInt(b, int64(r.Level), 10)
	b = refAppendString(b, "kind", string(r.Kind))
	if r.Client.IsValid() {
		b = append(b, `,"client":"`...)
		if r.Kind == KindDNS || r.Client.Port() == 0 {
			b = r.Client.Addr().AppendTo(b)
		} else {
			b = r.Client.AppendTo(b)
		}
		b = append(b, '"')
	}
	b = refAppendString(b, "device", r.Device)
	b = refAppendString(b, "mac", r.MAC)
	b = refAppendString(b, "event", r.Event)
	if r.ID != 0 {
		b = append(b, `,"id":`...)
		b = strconv.AppendUint(b, r.ID, 10)
	}
	b = refAppendString(b, "name", r.Name)
	b = refAppendString(b, "qtype", r.QType)
	if r.Port != 0 {
		b = append(b, `,"port":`...)
		b = strconv.AppendUint(b, uint64(r.Port), 10)
	}
	b = refAppendString(b, "sni", r.SNI)
	b = refAppendStrings(b, "alpn", r.ALPN)
	b = refAppendString(b, "verdict", r.Verdict)
	b = refAppendString(b, "rule", r.Rule)
	b = refAppendString(b, "reason", r.Reason)
	b = refAppendString(b, "rcode", r.Rcode)
	if r.Answer != nil {
		b = append(b, `,"answer":[`...)
		for i, a := range r.Answer {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, '"')
			b = a.AppendTo(b)
			b = append(b, '"')
		}
		b = append(b, ']')
	}
	if r.Upstream.IsValid() {
		b = append(b, `,"upstream":"`...)
		b = r.Upstream.AppendTo(b)
		b = append(b, '"')
	}
	b = refAppendString(b, "via", r.Via)
	if r.QuerySeq != 0 {
		b = append(b, `,"query_seq":`...)
		b = strconv.AppendUint(b, r.QuerySeq, 10)
	}
	b = refAppendStrings(b, "flags", r.Flags)
	if r.Kind == KindConn && r.Event == EventClose {
		b = append(b, `,"bytes_up":`...)
		b = strconv.AppendInt(b, r.BytesUp, 10)
		b = append(b, `,"bytes_down":`...)
		b = strconv.AppendInt(b, r.BytesDown, 10)
		b = append(b, `,"duration_ms":`...)
		b = strconv.AppendInt(b, r.DurationMS, 10)
	}
	b = refAppendString(b, "change", r.Change)
	b = refAppendString(b, "hash", r.Hash)
	if r.UID != nil {
		b = append(b, `,"uid":`...)
		b = strconv.AppendInt(b, int64(*r.UID), 10)
	}
	if r.Count != 0 {
		b = append(b, `,"count":`...)
		b = strconv.AppendUint(b, r.Count, 10)
	}
	return append(b, '}')
}

func refAppendString(b []byte, key, v string) []byte {
	if v == "" {
		return b
	}
	b = append(b, ',', '"')
	b = append(b, key...)
	b = append(b, '"', ':')
	return refAppendQuoted(b, v)
}

// refAppendQuoted writes v as a JSON string: quotes, backslashes and control characters escaped,
// invalid UTF-8 replaced by U+FFFD, so a hostile byte can never break a line of the log.
func refAppendQuoted(b []byte, v string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(v); {
		c := v[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c < 0x20 || c == 0x7f:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(v[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, `\ufffd`...)
		} else {
			b = append(b, v[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}

func refAppendStrings(b []byte, key string, vs []string) []byte {
	if len(vs) == 0 {
		return b
	}
	b = append(b, ',', '"')
	b = append(b, key...)
	b = append(b, `":[`...)
	for i, v := range vs {
		if i > 0 {
			b = append(b, ',')
		}
		b = refAppendQuoted(b, v)
	}
	return append(b, ']')
}

// TestAppendJSONMatchesReference encodes many random records, hostile ones among them, with
// both encoders and wants the same bytes.
func TestAppendJSONMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	g := recordGen{rng: rng, zones: testZones(t)}
	n := 50_000
	if testing.Short() {
		n = 5_000
	}
	var got, want []byte
	for i := range n {
		r := g.record()
		got = r.AppendJSON(got[:0])
		want = appendJSONReference(want[:0], r)
		if !bytes.Equal(got, want) {
			t.Fatalf("record %d (%+v):\n got %s\nwant %s", i, r, got, want)
		}
		// Appending after existing bytes must leave them alone.
		prefix := []byte("x\n")
		if got = r.AppendJSON(prefix); !bytes.Equal(got[2:], want) || string(got[:2]) != "x\n" {
			t.Fatalf("record %d after a prefix: %q", i, got)
		}
	}
}

// TestAppendTimeMatchesReference covers the edges of the hand-written time format: the ends
// of its year range and beyond, leap days, and every zone and sub-millisecond fraction.
func TestAppendTimeMatchesReference(t *testing.T) {
	zones := testZones(t)
	var times []time.Time
	for _, ymd := range [][3]int{
		{0, 1, 1}, {0, 2, 29}, {0, 3, 1}, {0, 12, 31}, {1, 1, 1}, {-1, 12, 31}, {-5, 6, 15},
		{-400, 1, 1}, {-10000, 1, 1}, {1600, 2, 29}, {1700, 2, 28}, {1700, 3, 1}, {1900, 2, 28},
		{1900, 3, 1}, {1969, 12, 31}, {1970, 1, 1}, {2000, 2, 29}, {2000, 3, 1}, {2024, 2, 29},
		{2026, 11, 28}, {2100, 2, 28}, {2100, 3, 1}, {9999, 12, 31}, {10000, 1, 1},
		{12345, 6, 7}, {-12345, 6, 7},
	} {
		for _, clock := range [][4]int{{0, 0, 0, 0}, {23, 59, 59, 999_999_999}, {12, 0, 0, 999_999}, {0, 0, 0, 1_000_000}} {
			times = append(times, time.Date(ymd[0], time.Month(ymd[1]), ymd[2], clock[0], clock[1], clock[2], clock[3], time.UTC))
		}
	}
	times = append(times, time.Time{}, time.Now(), time.Unix(0, 0), time.Unix(-1, 999_999_999),
		time.Unix(1<<62, 0), time.Unix(-1<<62, 0), time.Unix(1<<63-1, 999_999_999), time.Unix(-1<<63, 0),
		time.Time{}.Add(-time.Nanosecond), time.Time{}.Add(1<<63-1))
	for _, at := range times {
		for _, z := range zones {
			tz := at.In(z)
			got := string(appendTime(nil, tz))
			if want := string(tz.UTC().AppendFormat(nil, refTimeLayout)); got != want {
				t.Errorf("%v (unix %d): got %s, want %s", tz, tz.Unix(), got, want)
			}
		}
	}
	// Days from 0000-01-01 to 10000-01-01 and a little beyond each end, a few weeks apart at
	// most, at a random time of day.
	rng := rand.New(rand.NewPCG(3, 4))
	start := time.Date(-2, 1, 1, 0, 0, 0, 0, time.UTC)
	for d := 0; ; d += 1 + rng.IntN(30) {
		at := start.AddDate(0, 0, d).Add(time.Duration(rng.Int64N(int64(24 * time.Hour))))
		if at.Year() > 10001 {
			break
		}
		got := string(appendTime(nil, at))
		if want := string(at.UTC().AppendFormat(nil, refTimeLayout)); got != want {
			t.Fatalf("%v: got %s, want %s", at, got, want)
		}
	}
}

// FuzzAppendQuoted checks the string escaping against the reference; its seeds run with every
// `go test`.
func FuzzAppendQuoted(f *testing.F) {
	for _, s := range []string{"", "a", `"`, `\`, "\x00", "\x1f", "\x7f", "\x80", "\xff", "é", "日本語",
		"\U0001F600", "\xc3", "\xc3(", "\xed\xa0\x80", "\xc0\x80", "\uFFFD", "\u2028\u2029", "a\"b\\c\nd\xffe",
		"api.example.com (lnm.allow:3)", strings.Repeat("x", 300) + "\"", "\xf4\x90\x80\x80", "\xef\xbb\xbf"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, want := appendQuoted([]byte("p"), s), refAppendQuoted([]byte("p"), s)
		if !bytes.Equal(got, want) {
			t.Fatalf("%q: got %s, want %s", s, got, want)
		}
		if !json.Valid(got[1:]) {
			t.Fatalf("%q: not valid JSON: %s", s, got)
		}
		got, want = appendString(nil, "k", s), refAppendString(nil, "k", s)
		if !bytes.Equal(got, want) {
			t.Fatalf("appendString %q: got %s, want %s", s, got, want)
		}
	})
}

// testZones are the zones test times are shown in: the encoder must write UTC whatever the
// record's location.
func testZones(t *testing.T) []*time.Location {
	zones := []*time.Location{time.UTC, time.Local, time.FixedZone("", 0), time.FixedZone("IST", 5*3600+1800),
		time.FixedZone("odd", -(3*3600 + 25*60 + 7)), time.FixedZone("far", 14*3600), time.FixedZone("west", -12*3600)}
	for _, name := range []string{"America/New_York", "Europe/Berlin", "Australia/Lord_Howe", "Asia/Kathmandu"} {
		if z, err := time.LoadLocation(name); err == nil {
			zones = append(zones, z)
		} else {
			t.Logf("zone %s: %v", name, err)
		}
	}
	return zones
}

// recordGen makes random records: every field set or absent, odd strings, addresses of every
// family, times anywhere in any zone.
type recordGen struct {
	rng   *rand.Rand
	zones []*time.Location
}

func (g recordGen) chance(n int) bool { return g.rng.IntN(n) == 0 }

func (g recordGen) record() *Record {
	r := &Record{
		Seq: g.uint(), Time: g.time(), Box: g.str(), Level: g.int(), Kind: Kind(g.pick(
			string(KindDNS), string(KindConn), string(KindConfig), string(KindSummary), string(KindDHCP), g.str())),
		Verdict: g.pick(VerdictAllow, VerdictDeny, VerdictWouldDeny, VerdictRefused, "", g.str()),
		Rule:    g.str(), Reason: g.str(), Name: g.str(), QType: g.pick("A", "AAAA", "HTTPS", "", g.str()),
		Rcode: g.pick("NOERROR", "NXDOMAIN", "", g.str()), Event: g.pick(EventOpen, EventClose, EventDeny, "", g.str()),
		SNI: g.str(), Via: g.str(), Change: g.str(), Hash: g.str(), Device: g.str(), MAC: g.str(),
	}
	if !g.chance(4) {
		r.Client = g.addrPort()
	}
	if !g.chance(4) {
		r.Upstream = g.addrPort()
	}
	if !g.chance(2) {
		r.ID = g.uint()
	}
	if !g.chance(2) {
		r.Port = uint16(g.rng.Uint32())
	}
	if !g.chance(2) {
		r.QuerySeq = g.uint()
	}
	if !g.chance(2) {
		r.Count = g.uint()
	}
	if !g.chance(3) {
		r.BytesUp, r.BytesDown, r.DurationMS = int64(g.uint()), int64(g.uint()), int64(g.uint())
	}
	if g.chance(2) {
		uid := g.int()
		r.UID = &uid
	}
	r.ALPN, r.Flags = g.strs(), g.strs()
	switch g.rng.IntN(4) {
	case 0: // nil
	case 1:
		r.Answer = []netip.Addr{}
	default:
		for range 1 + g.rng.IntN(4) {
			r.Answer = append(r.Answer, g.addr())
		}
	}
	return r
}

func (g recordGen) pick(vs ...string) string { return vs[g.rng.IntN(len(vs))] }

// uint is small, large, or at the edges of uint64 and int64.
func (g recordGen) uint() uint64 {
	switch g.rng.IntN(6) {
	case 0:
		return 0
	case 1:
		return uint64(g.rng.IntN(100))
	case 2:
		return uint64(g.rng.IntN(1_000_000))
	case 3:
		return g.pick64(1<<63-1, 1<<63, 1<<64-1, 99, 100, 1e19)
	default:
		return g.rng.Uint64() >> g.rng.IntN(64)
	}
}

func (g recordGen) pick64(vs ...uint64) uint64 { return vs[g.rng.IntN(len(vs))] }

func (g recordGen) int() int {
	v := int(g.uint())
	if g.chance(3) {
		v = -v
	}
	return v
}

// time is zero, near now, or anywhere time.Time reaches, in any zone, often with a
// monotonic reading and nanoseconds below the millisecond.
func (g recordGen) time() time.Time {
	var t time.Time
	switch g.rng.IntN(8) {
	case 0:
		return time.Time{}
	case 1:
		t = time.Now().Add(time.Duration(g.rng.Int64N(int64(1000 * time.Hour))))
	case 2: // years 0000 to 9999 and a little beyond either end
		t = time.Unix(-62167219200-1e9+g.rng.Int64N(253402300800+62167219200+2e9), g.rng.Int64N(1e9))
	case 3:
		t = time.Unix(int64(g.rng.Uint64()), g.rng.Int64N(1e9))
	case 4:
		t = time.Time{}.Add(time.Duration(g.rng.Int64()))
	case 5:
		t = time.Time{}.Add(-time.Duration(g.rng.Int64()))
	default:
		t = t0.Add(time.Duration(g.rng.Int64N(int64(400 * 24 * time.Hour))))
	}
	if g.chance(3) {
		t = t.Truncate(time.Millisecond)
	}
	return t.In(g.zones[g.rng.IntN(len(g.zones))])
}

func (g recordGen) addr() netip.Addr {
	var a16 [16]byte
	for i := range a16 {
		if !g.chance(3) {
			a16[i] = byte(g.rng.Uint32())
		}
	}
	switch g.rng.IntN(7) {
	case 0, 1, 2:
		return netip.AddrFrom4([4]byte(a16[:4]))
	case 3:
		return netip.AddrFrom16(a16)
	case 4: // 4in6
		return netip.AddrFrom16(netip.AddrFrom4([4]byte(a16[:4])).As16())
	case 5:
		return netip.AddrFrom16(a16).WithZone(g.pick("eth0", "1", "z\"one"))
	default:
		return netip.MustParseAddr(g.pick("0.0.0.0", "255.255.255.255", "::", "::1", "fe80::1", "::ffff:0.0.0.0", "2001:db8::", "1::"))
	}
}

func (g recordGen) addrPort() netip.AddrPort {
	port := uint16(0)
	if !g.chance(3) {
		port = uint16(g.rng.Uint32())
	}
	return netip.AddrPortFrom(g.addr(), port)
}

// pieces are what random strings are made of.
var pieces = []string{"a", "api.example.com", "*.azure.test (lnm.conf:12)", " ", `"`, `\`, "\x00", "\n", "\t",
	"\x1f", "\x7f", "é", "日本", "\U0001F600", "\uFFFD", "\u2028", "\xff", "\x80", "\xc3", "\xed\xa0\x80",
	"\xc0\x80", "\xf4\x90\x80\x80", "\xe2\x82", "</script>", "&<>", "%", "}", ","}

func (g recordGen) str() string {
	switch g.rng.IntN(6) {
	case 0, 1:
		return ""
	case 2: // random bytes
		b := make([]byte, g.rng.IntN(12))
		for i := range b {
			b[i] = byte(g.rng.Uint32())
		}
		return string(b)
	default:
		var sb strings.Builder
		for range g.rng.IntN(6) {
			sb.WriteString(pieces[g.rng.IntN(len(pieces))])
		}
		return sb.String()
	}
}

func (g recordGen) strs() []string {
	switch g.rng.IntN(4) {
	case 0:
		return nil
	case 1:
		return []string{}
	default:
		vs := make([]string, 1+g.rng.IntN(3))
		for i := range vs {
			vs[i] = g.str()
		}
		return vs
	}
}

// TestReadLegacyReasons: reasons older versions wrote are read in today's words, and
// records written today read back unchanged.
func TestReadLegacyReasons(t *testing.T) {
	for _, tc := range []struct {
		name, line, want string
	}{
		{"old dns outside sources", `{"seq":9,"time":"2026-12-02T14:49:33.981Z","kind":"dns","client":"127.0.0.3","name":"a.test","qtype":"A","verdict":"refused","reason":"source_refused","rcode":"REFUSED"}`, "source_not_allowed"},
		{"old dns from mismatch", `{"seq":7,"time":"2026-12-02T14:49:33.917Z","kind":"dns","client":"127.0.0.1","name":"p.test","qtype":"A","verdict":"deny","rule":"p.test from 127.0.0.9/32 (lnm.conf:13)","reason":"source_not_allowed","rcode":"NXDOMAIN"}`, "from_mismatch"},
		{"old conn from mismatch", `{"seq":8,"time":"2026-12-02T14:49:33.929Z","kind":"conn","client":"127.0.0.1:40277","event":"deny","id":3,"port":443,"sni":"p.test","verdict":"deny","rule":"p.test from 127.0.0.9/32 (lnm.conf:13)","reason":"source_not_allowed"}`, "from_mismatch"},
		{"conn outside sources, old and new", `{"seq":10,"time":"2026-12-02T14:49:33.992Z","kind":"conn","client":"127.0.0.3:49813","event":"deny","id":4,"port":443,"verdict":"deny","reason":"source_not_allowed"}`, "source_not_allowed"},
		{"new from mismatch", `{"seq":8,"time":"2026-12-02T14:49:33.929Z","kind":"conn","client":"127.0.0.1:40277","event":"deny","id":3,"port":443,"sni":"p.test","verdict":"deny","rule":"p.test from 127.0.0.9/32 (lnm.conf:13)","reason":"from_mismatch"}`, "from_mismatch"},
		{"other reasons untouched", `{"seq":5,"time":"2026-12-02T14:49:33.852Z","kind":"dns","client":"127.0.0.1","name":"e.test","qtype":"A","verdict":"deny","reason":"not_listed","rcode":"NXDOMAIN"}`, "not_listed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var r Record
			if err := r.UnmarshalJSON([]byte(tc.line)); err != nil {
				t.Fatal(err)
			}
			if r.Reason != tc.want {
				t.Errorf("reason %q, want %q", r.Reason, tc.want)
			}
		})
	}
}
