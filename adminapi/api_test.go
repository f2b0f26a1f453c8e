package adminapi

import (
	"reflect"
	"testing"
	"time"

	"github.com/lnm-project/lnm/allowlist"
	"github.com/lnm-project/lnm/audit"
)

func TestQueryValuesRoundTrip(t *testing.T) {
	p, _ := allowlist.ParsePattern("*.azure.test")
	client, _ := ParseClient("198.18.3.20")
	q := Query{Filter: audit.Filter{
		Since: time.Date(2026, 11, 28, 7, 0, 0, 0, time.UTC), Until: time.Date(2026, 11, 28, 8, 0, 0, 5e6, time.UTC),
		Client: client, Name: &p, Verdict: audit.VerdictWouldDeny, Kind: audit.KindConn, Unlinked: true, Limit: 50,
		Device: "plc-07",
	}, Seqs: []uint64{3, 9}}
	back, err := ParseQuery(q.Values())
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, q) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", back, q)
	}
	if got := q.Values().Encode(); got != "client=198.18.3.20%2F32&device=plc-07&kind=conn&limit=50&name=%2A.azure.test&seq=3%2C9&since=2026-11-28T07%3A00%3A00Z&unlinked=1&until=2026-11-28T08%3A00%3A00.005Z&verdict=would-deny" {
		t.Errorf("encoded %s", got)
	}
}

func TestParseQueryErrors(t *testing.T) {
	for param, value := range map[string]string{
		"since": "yesterday", "until": "1h", "client": "10.0.0.300", "name": "a.*.b",
		"verdict": "maybe", "kind": "http", "unlinked": "yes", "limit": "-1", "seq": "1,x",
	} {
		_, err := ParseQuery(map[string][]string{param: {value}})
		if err == nil {
			t.Errorf("%s=%s accepted", param, value)
		}
	}
}
