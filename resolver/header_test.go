package resolver

import (
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/lnm-project/lnm/allowlist"
)

// TestReplyOwnBits: whatever bits a request sets, a reply carries RA, AD and Z clear, and a
// NOTIMP or FORMERR also AA and TC clear; ID and opcode are copied, and RD on a QUERY. An unknown opcode
// is answered by the handler and audited.
func TestReplyOwnBits(t *testing.T) {
	var mu sync.Mutex
	var events []QueryEvent
	s := startServer(t, Config{OnQuery: func(e QueryEvent) error {
		mu.Lock()
		events = append(events, e)
		mu.Unlock()
		return nil
	}})
	every := func(m *dns.Msg) {
		m.RecursionDesired, m.RecursionAvailable, m.AuthenticatedData, m.CheckingDisabled = true, true, true, true
		m.Truncated, m.Authoritative, m.Zero = true, true, true
	}
	notimp := new(dns.Msg).SetQuestion("api.example.com.", dns.TypeA)
	every(notimp)
	notimp.Opcode = 15
	noQuestion := new(dns.Msg)
	noQuestion.Id = 7
	every(noQuestion)
	allowed := new(dns.Msg).SetQuestion("api.example.com.", dns.TypeA)
	every(allowed)
	cut, err := allowed.Pack()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		req    []byte
		id     uint16
		rcode  int
		opcode int
		reason allowlist.Reason // "": not handled, no event
	}{
		{"unknown opcode", pack(t, notimp), notimp.Id, dns.RcodeNotImplemented, 15, ReasonOpcode},
		{"no question", pack(t, noQuestion), 7, dns.RcodeFormatError, dns.OpcodeQuery, ""}, // no name to record
		{"cut short", cut[:len(cut)-3], allowed.Id, dns.RcodeFormatError, dns.OpcodeQuery, ""},
		{"allowed", pack(t, allowed), allowed.Id, dns.RcodeSuccess, dns.OpcodeQuery, allowlist.ReasonListed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mu.Lock()
			before := len(events)
			mu.Unlock()
			h := rawUDP(t, s, tc.req, 5*time.Second)
			if h == nil {
				t.Fatal("no reply")
			}
			if h.Id != tc.id || h.Rcode != tc.rcode || h.Opcode != tc.opcode {
				t.Errorf("id %d rcode %s opcode %d, want %d %s %d", h.Id, dns.RcodeToString[h.Rcode], h.Opcode, tc.id, dns.RcodeToString[tc.rcode], tc.opcode)
			}
			if h.RecursionAvailable || h.Zero || h.AuthenticatedData {
				t.Errorf("RA, Z or AD set in the reply: %v", h.MsgHdr)
			}
			if tc.rcode != dns.RcodeSuccess && (h.Authoritative || h.Truncated) {
				t.Errorf("AA or TC set on a %s: %v", dns.RcodeToString[tc.rcode], h.MsgHdr)
			}
			if tc.opcode == dns.OpcodeQuery && !h.RecursionDesired {
				t.Errorf("RD not copied")
			}
			mu.Lock()
			got := events[before:]
			mu.Unlock()
			if tc.reason == "" {
				return
			}
			if len(got) != 1 || got[0].Reason != tc.reason {
				t.Errorf("events %+v, want one with reason %s", got, tc.reason)
			}
		})
	}
}

func pack(t *testing.T, m *dns.Msg) []byte {
	t.Helper()
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestDigAllFlags is the catalog's case with the real client: dig +opcode=15 with every flag
// set gets NOTIMP with RA, AD, TC, AA and Z clear.
func TestDigAllFlags(t *testing.T) {
	if _, err := exec.LookPath("dig"); err != nil {
		t.Skip("LOUD SKIP: dig is not installed (apt-get install bind9-dnsutils; make test and CI install it)")
	}
	s := startServer(t, Config{})
	out, err := exec.Command("dig", "@"+s.Addr().Addr().String(), "-p", strconv.Itoa(int(s.Addr().Port())), "+opcode=15",
		"+raflag", "+adflag", "+tcflag", "+aaflag", "+zflag", "+tries=1", "+time=3", "api.example.com").CombinedOutput()
	if err != nil {
		t.Fatalf("dig: %v\n%s", err, out)
	}
	var flagLine string
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, "status:") {
			if !strings.Contains(line, "status: NOTIMP") {
				t.Errorf("dig: %s", line)
			}
		}
		if strings.HasPrefix(line, ";; flags:") {
			flagLine = line
		}
	}
	flags := strings.Fields(strings.TrimPrefix(strings.SplitN(flagLine, ";", 3)[2], " flags:"))
	for _, f := range flags {
		if f == "ra" || f == "ad" || f == "tc" || f == "aa" || f == "z" {
			t.Errorf("dig sees flag %s: %s", f, flagLine)
		}
	}
	if flagLine == "" {
		t.Fatalf("no flags line in dig's output:\n%s", out)
	}
}
