package audit

import (
	"encoding/json"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

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
		{"config by uid", Record{Seq: 1, Time: t0, Box: "l3", Kind: KindConfig, Change: "allow add x.test", Hash: "ab12", UID: &uid},
			`{"seq":1,"time":"2026-11-28T07:30:00.123Z","box":"l3","level":0,"kind":"config","change":"allow add x.test","hash":"ab12","uid":1000}`},
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
	}
	for _, tc := range []struct {
		name string
		f    Filter
		want []uint64
	}{
		{"zero selects all", Filter{}, []uint64{1, 2, 3, 4, 5}},
		{"since", Filter{Since: t0.Add(2 * time.Minute)}, []uint64{3, 4, 5}},
		{"until is exclusive", Filter{Until: t0.Add(time.Minute)}, []uint64{1}},
		{"client prefix", Filter{Client: netip.MustParsePrefix("198.18.3.20/32")}, []uint64{1, 2}},
		{"name pattern on name and sni", Filter{Name: &wild}, []uint64{1, 2}},
		{"deny includes refused", Filter{Verdict: VerdictDeny}, []uint64{3, 4}},
		{"kind", Filter{Kind: KindConn}, []uint64{2, 3}},
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

func BenchmarkAppendJSON(b *testing.B) {
	r := Record{Seq: 9, Time: t0, Box: "l3", Level: 3, Kind: KindConn, Event: EventClose, ID: 4,
		Client: netip.MustParseAddrPort("198.18.3.20:40000"), Port: 443, SNI: "api.azure.test",
		Verdict: VerdictAllow, Reason: "eof", Upstream: netip.MustParseAddrPort("198.18.4.1:443"), Via: "parent", QuerySeq: 7}
	buf := make([]byte, 0, 1024)
	b.ReportAllocs()
	for b.Loop() {
		buf = r.AppendJSON(buf[:0])
	}
	if !strings.HasSuffix(string(buf), "}") {
		b.Fatal(string(buf))
	}
}
