package resolver

import (
	"context"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// digCase runs a real client against the server and looks for every want and no unwanted
// string in its output.
type digCase struct {
	name   string
	args   []string
	want   []string
	unwant []string
}

func runTool(t *testing.T, bin string, args []string) string {
	t.Helper()
	path, err := exec.LookPath(bin)
	if err != nil {
		t.Skipf("SKIP LOUDLY: %s is not installed (apt-get install -y bind9-dnsutils knot-dnsutils): %v", bin, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", bin, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func checkTool(t *testing.T, bin string, base []string, cases []digCase) {
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out := runTool(t, bin, append(append([]string(nil), base...), tc.args...))
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			for _, u := range tc.unwant {
				if strings.Contains(out, u) {
					t.Errorf("output has %q:\n%s", u, out)
				}
			}
		})
	}
}

func TestDig(t *testing.T) {
	if _, err := exec.LookPath("dig"); err != nil {
		t.Skipf("SKIP LOUDLY: dig is not installed (apt-get install -y bind9-dnsutils): %v", err)
	}
	s := startServer(t, Config{})
	base := []string{"@127.0.0.1", "-p", strconv.Itoa(int(s.Addr().Port())), "+time=3", "+tries=1"}
	checkTool(t, "dig", base, []digCase{
		{"allowed A over UDP", []string{"api.example.com", "A"},
			[]string{"status: NOERROR", "flags: qr aa rd;", "api.example.com.\t60\tIN\tA\t127.0.0.1", "udp: 1232"},
			[]string{" ra"}},
		{"allowed A over TCP", []string{"+tcp", "api.example.com", "A"},
			[]string{"status: NOERROR", "api.example.com.\t60\tIN\tA\t127.0.0.1", "(TCP)"}, nil},
		{"norec", []string{"+norec", "x.azure.test"},
			[]string{"status: NOERROR", "flags: qr aa;", "x.azure.test.\t\t60\tIN\tA\t127.0.0.1"}, nil},
		{"NXDOMAIN with SOA", []string{"evil.example.org"},
			[]string{"status: NXDOMAIN", "AUTHORITY: 1", ".\t\t\t60\tIN\tSOA\tlnm. hostmaster.lnm. 1 3600 600 86400 60"}, nil},
		{"empty non-terminal", []string{"azure.test"},
			[]string{"status: NOERROR", "ANSWER: 0", "AUTHORITY: 1"}, nil},
		{"HTTPS is NODATA", []string{"-t", "TYPE65", "api.example.com"},
			[]string{"status: NOERROR", "ANSWER: 0", "AUTHORITY: 1"}, nil},
		{"TYPE1000 is NODATA", []string{"-t", "TYPE1000", "api.example.com"},
			[]string{"status: NOERROR", "ANSWER: 0"}, nil},
		{"ANY is minimal", []string{"-t", "ANY", "api.example.com"},
			[]string{"status: NOERROR", "ANSWER: 1", "IN\tA\t127.0.0.1"}, nil},
		{"EDNS version 1 is BADVERS", []string{"+edns=1", "+noednsneg", "api.example.com"},
			[]string{"status: BADVERS", "EDNS: version: 0"}, nil},
		{"small bufsize", []string{"+bufsize=512", "api.example.com"},
			[]string{"status: NOERROR", "udp: 1232"}, nil},
		{"unknown option not echoed, DO echoed", []string{"+ednsopt=65001:abcd", "+dnssec", "api.example.com"},
			[]string{"status: NOERROR", "flags: do;"}, []string{"OPT=65001"}},
		{"0x20 casing", []string{"aPi.ExAmPlE.cOm"},
			[]string{";aPi.ExAmPlE.cOm.\t\tIN\tA", "aPi.ExAmPlE.cOm.\t60\tIN\tA\t127.0.0.1"}, nil},
		{"AXFR over TCP is refused", []string{"-t", "AXFR", "example.com"},
			[]string{"Transfer failed"}, []string{"IN\tA\t"}},
		{"CHAOS version.bind is refused", []string{"-c", "CH", "-t", "TXT", "version.bind"},
			[]string{"status: REFUSED"}, nil},
		{"opcode 15 is NOTIMP", []string{"+opcode=15", "+header-only"},
			[]string{"status: NOTIMP"}, nil},
		{"zflag is ignored", []string{"+zflag", "api.example.com"},
			[]string{"status: NOERROR"}, nil},
	})
}

func TestKdig(t *testing.T) {
	if _, err := exec.LookPath("kdig"); err != nil {
		t.Skipf("SKIP LOUDLY: kdig is not installed (apt-get install -y knot-dnsutils): %v", err)
	}
	s := startServer(t, Config{})
	base := []string{"@127.0.0.1", "-p", strconv.Itoa(int(s.Addr().Port())), "+time=3", "+retry=0"}
	checkTool(t, "kdig", base, []digCase{
		{"allowed A over UDP", []string{"api.example.com", "A"},
			[]string{"status: NOERROR", "Flags: qr aa rd;", "\t60\tIN\tA\t127.0.0.1", "From 127.0.0.1@"}, nil},
		{"TCP keepopen, two questions", []string{"+tcp", "+keepopen", "api.example.com", "A", "evil.example.org", "A"},
			[]string{"status: NOERROR", "status: NXDOMAIN", "TCP"}, nil},
		{"padding option not echoed", []string{"+padding", "api.example.com"},
			[]string{"status: NOERROR", "Version: 0; flags: ; UDP size: 1232 B"}, []string{"PADDING"}},
		{"EDNS version 1 is BADVERS", []string{"+edns=1", "api.example.com"},
			[]string{"status: BADVERS"}, nil},
		{"HTTPS is NODATA", []string{"-t", "TYPE65", "api.example.com"},
			[]string{"status: NOERROR", "ANSWER: 0"}, nil},
	})
}
