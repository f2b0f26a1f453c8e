package main

// Level identity in the lab (issue #11, the faults catalog's case 15): a device's connection
// through three boxes is named at the top box, a device that sends its own PROXY header is
// refused and recorded, and two boxes that are each other's parent refuse the looping
// connection long before the hop limit, each logging why.

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lnm-project/lnm/audit"
)

// l5Addr is a third box in the level-4 namespace, on the level-3/level-4 link: the level-4
// box's parent (the lab has four namespaces; a box needs only its own address).
const l5Addr = "198.18.4.2"

// levelConf is a minimal box config: proxy 443 and 8883 (startBox waits for both), level
// identity on, the names the tests fetch.
func levelConf(level, name, listen string, extra ...string) string {
	lines := []string{"lnm {", "    level " + level, "    name " + name, "    listen " + listen,
		"    dns 53", "    proxy 443 8883", "    level_identity on"}
	for _, e := range extra {
		lines = append(lines, "    "+e)
	}
	lines = append(lines, "    allow {", "        .contoso.test", "    }", "}", "")
	return strings.Join(lines, "\n")
}

// waitRecords polls a box's audit log until match holds for its records, for 20 s.
func (l *lab) waitRecords(bin, box string, match func([]audit.Record) bool, args ...string) []audit.Record {
	l.t.Helper()
	var recs []audit.Record
	waitFor(20*time.Second, func() bool {
		recs = l.auditQuery(bin, box, args...)
		return match(recs)
	})
	return recs
}

func TestE2ELevelIdentity(t *testing.T) {
	requireLab(t)
	bin := buildLNM(t)
	l := newLab(t)
	l.dumpLogsOnFailure()
	l.startInet()
	l.addr("l4", "to-l3", l5Addr+"/24")

	// Level 5 resolves and dials the internet; level 4's parent is level 5, level 3's is
	// level 4. Each names the box below as its child. A box dialing another in its own
	// namespace leaves from an address of that link, so level 5's children is the link.
	l5 := levelConf("5", "l5-dmz", l5Addr, "upstream "+inetDNS, "children 198.18.4.0/24")
	l4 := levelConf("4", "l4-site", l4DownAddr, "parent "+l5Addr, "children "+l3UpAddr)
	l3 := levelConf("3", "l3-gw", l3DownAddr, "parent "+l4DownAddr, "sources 198.18.3.0/24")
	l.startBoxAs(bin, "l4", "l5", l5, l5Addr)
	l.startBox(bin, "l4", l4, l4DownAddr)
	l.startBox(bin, "l3", l3, l3DownAddr)

	t.Run("the top box names the device", func(t *testing.T) {
		body, errOut, err := l.curl("dev", "https://www.contoso.test/levelid-probe", "--interface", devAddr)
		if err != nil || !strings.Contains(body, "sni=www.contoso.test ") {
			t.Fatalf("curl through three boxes: %v\nbody: %s\nstderr: %s", err, body, errOut)
		}
		isOpen := func(r audit.Record) bool {
			return r.Kind == audit.KindConn && r.Event == audit.EventOpen && r.SNI == "www.contoso.test"
		}
		var at3 audit.Record
		l.waitRecords(bin, "l3", func(rs []audit.Record) bool {
			for _, r := range rs {
				if isOpen(r) && r.Client.Addr().String() == devAddr {
					at3 = r
				}
			}
			return at3.ID != 0
		})
		if at3.ID == 0 || at3.Origin != nil {
			t.Fatalf("level 3's open record %+v: want one from the device, with no origin", at3)
		}
		var at4, at5 audit.Record
		l.waitRecords(bin, "l4", func(rs []audit.Record) bool {
			for _, r := range rs {
				if isOpen(r) && r.Origin != nil && r.Origin.ID == at3.ID {
					at4 = r
				}
			}
			return at4.ID != 0
		})
		o := at4.Origin
		if o == nil || o.Device.Addr().String() != devAddr || o.Device.Port() != at3.Client.Port() || !slices.Equal(o.Path, []string{"l3-gw"}) {
			t.Fatalf("level 4's open record %+v, origin %+v: want the device %s via l3-gw", at4, o, at3.Client)
		}
		// At the top, `lnm audit query --origin` finds the device's connection by its address.
		recs := l.waitRecords(bin, "l5", func(rs []audit.Record) bool {
			for _, r := range rs {
				if isOpen(r) && r.Origin != nil && r.Origin.ID == at4.ID {
					at5 = r
				}
			}
			return at5.ID != 0
		}, "--origin", devAddr)
		o = at5.Origin
		if o == nil || o.Device != at3.Client || !slices.Equal(o.Path, []string{"l3-gw", "l4-site"}) || at5.Via != "direct" {
			t.Fatalf("level 5's open record %+v, origin %+v: want the device %s via l3-gw and l4-site, sent direct", at5, o, at3.Client)
		}
		for _, r := range recs {
			if r.Origin == nil || r.Origin.Device.Addr().String() != devAddr {
				t.Errorf("--origin %s selected %+v", devAddr, r)
			}
		}
		if other := l.auditQuery(bin, "l5", "--origin", devAddr2); len(other) != 0 {
			t.Errorf("--origin %s selected %d records of another device", devAddr2, len(other))
		}

		// `lnm audit trace` from level 5's record down through the three logs.
		dirs := []string{"--dir", filepath.Join(l.dir, "l5", "audit"), "--dir", filepath.Join(l.dir, "l4", "audit"), "--dir", filepath.Join(l.dir, "l3", "audit")}
		seq := strconv.FormatUint(at5.Seq, 10)
		out, err := exec.Command(bin, append(append([]string{"audit", "trace"}, dirs...), seq)...).CombinedOutput()
		if err != nil || !strings.HasPrefix(string(out), "device "+at3.Client.String()+"\n") {
			t.Fatalf("lnm audit trace %s: %v\n%s", seq, err, out)
		}
		t.Logf("lnm audit trace %s:\n%s", seq, out)
		out, err = exec.Command(bin, append(append([]string{"audit", "trace", "--json"}, dirs...), seq)...).Output()
		if err != nil {
			t.Fatalf("lnm audit trace --json %s: %v", seq, err)
		}
		var chain []string
		for line := range strings.Lines(string(out)) {
			var r audit.Record
			if err := json.Unmarshal([]byte(line), &r); err != nil {
				t.Fatal(err)
			}
			if r.Event == audit.EventOpen {
				chain = append(chain, fmt.Sprintf("%s#%d", r.Box, r.Seq))
			}
		}
		want := []string{fmt.Sprintf("l3-gw#%d", at3.Seq), fmt.Sprintf("l4-site#%d", at4.Seq), fmt.Sprintf("l5-dmz#%d", at5.Seq)}
		if !slices.Equal(chain, want) {
			t.Errorf("trace's open records %v, want %v\n%s", chain, want, out)
		}
	})

	t.Run("a device's own PROXY header is refused", func(t *testing.T) {
		// curl's --haproxy-protocol sends a PROXY v1 line naming the device before TLS: a
		// device claiming to speak for an address. Level 3 has no children; it refuses.
		_, _, err := l.curl("dev", "https://www.contoso.test/", "--haproxy-protocol", "--interface", devAddr2)
		if err == nil {
			t.Fatal("curl --haproxy-protocol went through the box")
		}
		var deny audit.Record
		l.waitRecords(bin, "l3", func(rs []audit.Record) bool {
			for _, r := range rs {
				if r.Kind == audit.KindConn && r.Event == audit.EventDeny && r.Client.Addr().String() == devAddr2 {
					deny = r
				}
			}
			return deny.Reason != ""
		})
		if deny.Reason != "proxy_header_refused" {
			t.Errorf("level 3's record of it %+v: want a deny with reason proxy_header_refused", deny)
		}
	})
}

func TestE2ELevelLoop(t *testing.T) {
	requireLab(t)
	bin := buildLNM(t)
	l := newLab(t)
	l.dumpLogsOnFailure()
	// A misconfigured pair: each box's parent is the other. Level 4 reaches level 3's listen
	// address through level 3's address on their link (level 3 does not forward; the
	// address is its own).
	l.ip("l4", "route", "add", "198.18.3.0/24", "via", l3UpAddr)
	a := levelConf("3", "loop-a", l3DownAddr, "parent "+l4DownAddr, "children "+l4DownAddr, "sources 198.18.3.0/24 "+l4DownAddr)
	b := levelConf("4", "loop-b", l4DownAddr, "parent "+l3DownAddr, "children "+l3UpAddr)
	pa := l.startBox(bin, "l3", a, l3DownAddr)
	pb := l.startBox(bin, "l4", b, l4DownAddr)

	// One connection enters at each box: the device's at loop-a, and one at loop-b from a
	// client in the level-3 namespace (loop-b's child address, sending no header of its own).
	if _, _, err := l.curl("dev", "https://www.contoso.test/", "--connect-to", "::"+l3DownAddr+":443"); err == nil {
		t.Error("a connection went round the loop and through")
	}
	if _, _, err := l.curl("l3", "https://www.contoso.test/", "--connect-to", "::"+l4DownAddr+":443"); err == nil {
		t.Error("a connection went round the loop and through")
	}

	for _, c := range []struct {
		box, other string
		p          *proc
	}{{"l3", "loop-b", pa}, {"l4", "loop-a", pb}} {
		name := map[string]string{"l3": "loop-a", "l4": "loop-b"}[c.box]
		var loop audit.Record
		recs := l.waitRecords(bin, c.box, func(rs []audit.Record) bool {
			for _, r := range rs {
				if r.Kind == audit.KindConn && r.Reason == "loop" {
					loop = r
				}
			}
			return loop.Reason != ""
		})
		if loop.Reason != "loop" {
			t.Errorf("%s (%s) recorded no loop refusal: %+v", name, c.box, recs)
			continue
		}
		// The refusal records the path that came back: this box, the other, and here again.
		if o := loop.Origin; o == nil || !slices.Equal(o.Path, []string{name, c.other}) {
			t.Errorf("%s's loop refusal %+v: want the path [%s %s] as its origin", name, loop, name, c.other)
		}
		// Each connection went once round the loop: two opens per box at most (its own
		// entry and the other's), not a cascade up to the hop limit.
		opens := 0
		for _, r := range recs {
			if r.Kind == audit.KindConn && r.Event == audit.EventOpen {
				opens++
			}
		}
		if opens > 2 {
			t.Errorf("%s opened %d streams for two connections: the loop was not cut at once", name, opens)
		}
		if log := readFile(c.p.log); !strings.Contains(log, "level identity: connection refused") || !strings.Contains(log, `"reason":"loop"`) {
			t.Errorf("%s's log does not say why it refused the loop:\n%s", name, log)
		}
	}
}
