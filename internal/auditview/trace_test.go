package auditview

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/lnm-project/lnm/audit"
)

var t0 = time.Date(2026, 11, 28, 7, 30, 0, 0, time.UTC)

// threeBoxes is one connection as l3, l4 and l5 recorded it, plus an older connection at l3
// with the same id (its process restarted since) and another connection at l4.
func threeBoxes() []*audit.Record {
	dev := netip.MustParseAddrPort("198.18.3.20:40312")
	conn := func(seq uint64, box string, level int, ev string, id uint64, at time.Duration, client string, o *audit.Origin) *audit.Record {
		return &audit.Record{Seq: seq, Time: t0.Add(at), Box: box, Level: level, Kind: audit.KindConn, Event: ev, ID: id,
			Client: netip.MustParseAddrPort(client), Port: 443, SNI: "www.contoso.test", Verdict: audit.VerdictAllow, Origin: o}
	}
	return []*audit.Record{
		conn(3, "l3-gw", 3, audit.EventOpen, 4, -time.Hour, "198.18.3.99:1000", nil), // before a restart
		conn(4, "l3-gw", 3, audit.EventClose, 4, -time.Hour+time.Second, "198.18.3.99:1000", nil),
		conn(9, "l3-gw", 3, audit.EventOpen, 4, 0, dev.String(), nil),
		conn(12, "l3-gw", 3, audit.EventClose, 4, 30*time.Second, dev.String(), nil),
		conn(20, "l4-site", 4, audit.EventOpen, 16, 5*time.Millisecond, "198.18.4.3:50000", &audit.Origin{Device: netip.MustParseAddrPort("198.18.3.21:1"), Path: []string{"l3-gw"}, ID: 3}),
		conn(21, "l4-site", 4, audit.EventOpen, 17, 10*time.Millisecond, "198.18.4.3:51022", &audit.Origin{Device: dev, Path: []string{"l3-gw"}, ID: 4}),
		conn(41, "l5-dmz", 5, audit.EventOpen, 2, 20*time.Millisecond, "198.18.4.1:40000", &audit.Origin{Device: dev, Path: []string{"l3-gw", "l4-site"}, ID: 17}),
		conn(44, "l5-dmz", 5, audit.EventClose, 2, 31*time.Second, "198.18.4.1:40000", &audit.Origin{Device: dev, Path: []string{"l3-gw", "l4-site"}, ID: 17}),
	}
}

func lookupIn(recs []*audit.Record, without string) Lookup {
	return func(box string, id uint64, _ time.Time) ([]*audit.Record, error) {
		var out []*audit.Record
		for _, r := range recs {
			if r.Box == box && r.ID == id && r.Box != without {
				out = append(out, r)
			}
		}
		return out, nil
	}
}

func seqs(hops []Hop) (out []uint64) {
	for _, h := range hops {
		for _, r := range []*audit.Record{h.First, h.Close} {
			if r != nil {
				out = append(out, r.Seq)
			}
		}
		if h.First == nil {
			out = append(out, 0)
		}
	}
	return out
}

func TestTrace(t *testing.T) {
	recs := threeBoxes()
	top := recs[7] // l5's close record
	for _, c := range []struct {
		name    string
		without string
		want    []uint64
		boxes   string
	}{
		{"all logs", "", []uint64{9, 12, 21, 41, 44}, "l3-gw l4-site l5-dmz"},
		{"the first box's log missing", "l3-gw", []uint64{0, 21, 41, 44}, "l3-gw l4-site l5-dmz"},
		{"the middle box's log missing", "l4-site", []uint64{0, 0, 41, 44}, "l3-gw l4-site l5-dmz"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dev, hops, err := Trace(top, lookupIn(recs, c.without))
			if err != nil {
				t.Fatal(err)
			}
			if dev.String() != "198.18.3.20:40312" {
				t.Errorf("device %s", dev)
			}
			if got := seqs(hops); !equalSeqs(got, c.want) {
				t.Errorf("records %v, want %v", got, c.want)
			}
			var boxes []string
			for _, h := range hops {
				boxes = append(boxes, h.Box)
			}
			if strings.Join(boxes, " ") != c.boxes {
				t.Errorf("boxes %v, want %s", boxes, c.boxes)
			}
		})
	}
	if _, _, err := Trace(&audit.Record{Seq: 1, Kind: audit.KindDNS}, lookupIn(recs, "")); err == nil {
		t.Error("traced a dns record")
	}
	// A record from a device has no origin: the trace is that one box.
	dev, hops, err := Trace(recs[2], lookupIn(recs, ""))
	if err != nil || dev.String() != "198.18.3.20:40312" || len(hops) != 1 || hops[0].Close == nil || hops[0].Close.Seq != 12 {
		t.Errorf("trace of a device's own connection: %v %+v %v", dev, hops, err)
	}
}

func equalSeqs(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestWriteTrace(t *testing.T) {
	recs := threeBoxes()
	dev, hops, err := Trace(recs[6], lookupIn(recs, "l4-site"))
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	if err := (&Renderer{Loc: time.UTC}).WriteTrace(&b, dev, hops); err != nil {
		t.Fatal(err)
	}
	want := `device 198.18.3.20:40312
SEQ  TIME                     BOX         CLIENT            NAME/SNI          VERDICT  DETAIL
-    -                        l3-gw       -                 -                 -        not in the logs given
-    -                        l4-site     -                 -                 -        not in the logs given (its id 17)
41   2026-11-28 07:30:00.020  l5-dmz (5)  198.18.4.1:40000  www.contoso.test  allow    open id 2 :443  origin 198.18.3.20:40312 via l3-gw,l4-site id 17
44   2026-11-28 07:30:31.000  l5-dmz (5)  198.18.4.1:40000  www.contoso.test  allow    close id 2 :443  origin 198.18.3.20:40312 via l3-gw,l4-site id 17  up 0B down 0B in 0s
`
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
}
