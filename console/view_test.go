package console

import (
	"bytes"
	"crypto/x509"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lnm-project/lnm/adminapi"
	"github.com/lnm-project/lnm/audit"
)

// TestChartOf: records count in the minute they fall in, denials also on their own; closes,
// config records and records older than an hour are left out.
func TestChartOf(t *testing.T) {
	now := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	recs := []audit.Record{
		{Kind: audit.KindDNS, Time: now.Add(-30 * time.Second), Verdict: audit.VerdictAllow},
		{Kind: audit.KindDNS, Time: now.Add(-40 * time.Second), Verdict: audit.VerdictDeny},
		{Kind: audit.KindConn, Event: audit.EventOpen, Time: now.Add(-90 * time.Second), Verdict: audit.VerdictAllow},
		{Kind: audit.KindConn, Event: audit.EventClose, Time: now.Add(-90 * time.Second), Verdict: audit.VerdictAllow},
		{Kind: audit.KindConfig, Time: now.Add(-10 * time.Second)},
		{Kind: audit.KindDNS, Time: now.Add(-61 * time.Minute), Verdict: audit.VerdictDeny},
	}
	c := chartOf(recs, now)
	if len(c.Bars) != 60 || c.Max != 2 || c.Denials != 1 {
		t.Fatalf("chart: %d bars, max %d, %d denials; want 60, 2, 1", len(c.Bars), c.Max, c.Denials)
	}
	last, before := c.Bars[59], c.Bars[58]
	if last.H != chartHeight || last.DenyH != chartHeight/2 || before.H != chartHeight/2 || before.DenyH != 0 || c.Bars[0].H != 0 {
		t.Errorf("bars: last %+v, one before %+v, first %+v", last, before, c.Bars[0])
	}
	if empty := chartOf(nil, now); empty.Max != 0 || empty.Bars[0].Y != chartHeight {
		t.Errorf("empty chart: %+v", empty.Bars[0])
	}
}

// TestDevicesOf: a device is named by its records' DHCP name or else its bound lease, and
// counts queries, opened connections, bytes of closes and denials.
func TestDevicesOf(t *testing.T) {
	a := netip.MustParseAddrPort("198.18.3.20:4000")
	b := netip.MustParseAddrPort("198.18.3.21:4000")
	recs := []audit.Record{
		{Kind: audit.KindDNS, Client: a, Name: "x.test", Verdict: audit.VerdictDeny},
		{Kind: audit.KindConn, Event: audit.EventOpen, Client: a, SNI: "y.test", Verdict: audit.VerdictAllow, Flags: []string{audit.FlagUnlinked}},
		{Kind: audit.KindConn, Event: audit.EventClose, Client: a, SNI: "y.test", Verdict: audit.VerdictAllow, BytesUp: 10, BytesDown: 20},
		{Kind: audit.KindDNS, Client: b, Name: "z.test", Device: "hmi-1", MAC: "02:00:00:00:00:01", Verdict: audit.VerdictAllow},
	}
	leases := []adminapi.DHCPLease{{Addr: a.Addr(), MAC: "00:1b:1b:aa:bb:07", Device: "plc-07", State: "bound"}}
	ds := devicesOf(recs, leases)
	if len(ds) != 2 {
		t.Fatalf("%d devices", len(ds))
	}
	d := ds[0]
	if d.Name != "plc-07" || d.MAC != "00:1b:1b:aa:bb:07" || d.Queries != 1 || d.Conns != 1 || d.Denied != 1 ||
		d.BytesUp != 10 || d.BytesDown != 20 || len(d.Names) != 2 || len(d.Flag) != 1 {
		t.Errorf("device a: %+v", d)
	}
	if ds[1].Name != "hmi-1" || ds[1].MAC != "02:00:00:00:00:01" {
		t.Errorf("device b: %+v", ds[1])
	}
}

// TestThrottleWait: three failures are free, then each further one doubles the wait, up to
// the maximum; an hour of quiet starts over.
func TestThrottleWait(t *testing.T) {
	now := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		n    int
		ago  time.Duration
		want time.Duration
	}{
		{2, 0, 0},
		{3, 0, time.Second},
		{4, 0, 2 * time.Second},
		{4, time.Second, time.Second},
		{4, 3 * time.Second, 0},
		{30, 0, throttleMaxWait},
		{30, 2 * time.Hour, 0},
	} {
		if got := (failures{n: c.n, last: now.Add(-c.ago)}).wait(now); got != c.want {
			t.Errorf("%d failures, last %v ago: wait %v, want %v", c.n, c.ago, got, c.want)
		}
	}
}

// TestLocalNext: the page after sign-in stays on this site.
func TestLocalNext(t *testing.T) {
	for in, want := range map[string]string{
		"/devices": "/devices", "": "/", "https://evil.test/": "/", "//evil.test/": "/", "/\\evil.test": "/",
	} {
		if got := localNext(in); got != want {
			t.Errorf("localNext(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestEventAllowLink: a denied name's allow link carries it escaped, with the port when the
// port was what the list refused; allowed records have none.
func TestEventAllowLink(t *testing.T) {
	c := netip.MustParseAddrPort("198.18.3.20:4000")
	for _, tc := range []struct {
		r    audit.Record
		want string
	}{
		{audit.Record{Kind: audit.KindDNS, Client: c, Name: "a.test", Verdict: audit.VerdictDeny}, "/allow?pattern=a.test"},
		{audit.Record{Kind: audit.KindDNS, Client: c, Name: "a.test&ports=1", Verdict: audit.VerdictWouldDeny}, "/allow?pattern=a.test%26ports%3D1"},
		{audit.Record{Kind: audit.KindConn, Client: c, SNI: "m.test", Port: 8883, Verdict: audit.VerdictDeny, Reason: "port_not_allowed"}, "/allow?pattern=m.test&ports=8883"},
		{audit.Record{Kind: audit.KindDNS, Client: c, Name: "ok.test", Verdict: audit.VerdictAllow}, ""},
	} {
		if got := eventOf(&tc.r).Allow; got != tc.want {
			t.Errorf("%s %s: allow link %q, want %q", tc.r.Name+tc.r.SNI, tc.r.Verdict, got, tc.want)
		}
	}
}

// TestCertificate: the first start makes a self-signed certificate (key mode 0600) that later
// starts keep; a configured certificate is used instead, and a bad one is an error naming it.
func TestCertificate(t *testing.T) {
	dir := t.TempDir()
	s, err := New(Options{Dir: dir, Admin: adminapi.NewClient(filepath.Join(dir, "none.sock")), Box: "box3"})
	if err != nil {
		t.Fatal(err)
	}
	first, err := s.TLSConfig()
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(dir, keyName))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key: %v %v, want mode 0600", st, err)
	}
	again, err := s.TLSConfig()
	if err != nil || !bytes.Equal(first.Certificates[0].Certificate[0], again.Certificates[0].Certificate[0]) {
		t.Fatalf("second start made another certificate (%v)", err)
	}
	leaf, err := x509.ParseCertificate(first.Certificates[0].Certificate[0])
	if err != nil || leaf.Subject.CommonName != "box3 lnm console" {
		t.Errorf("certificate %v: %v", leaf.Subject, err)
	}

	other := t.TempDir()
	if err := SelfSigned(filepath.Join(other, "c.pem"), filepath.Join(other, "k.pem"), "configured", time.Now()); err != nil {
		t.Fatal(err)
	}
	s.opt.CertFile, s.opt.KeyFile = filepath.Join(other, "c.pem"), filepath.Join(other, "k.pem")
	cfg, err := s.TLSConfig()
	if err != nil {
		t.Fatal(err)
	}
	if leaf, _ := x509.ParseCertificate(cfg.Certificates[0].Certificate[0]); leaf.Subject.CommonName != "configured lnm console" {
		t.Errorf("configured certificate not used: %v", leaf.Subject)
	}
	s.opt.KeyFile = filepath.Join(other, "missing.pem")
	if _, err := s.TLSConfig(); err == nil || !strings.Contains(err.Error(), "missing.pem") {
		t.Errorf("missing key: %v, want an error naming it", err)
	}
}

// TestUsersFile: a bad line is an error naming the file and line; SetPassword refuses bad
// names, roles and short passwords.
func TestUsersFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), UsersFile)
	if err := SetPassword(path, "alice", RoleAdmin, "long enough"); err != nil {
		t.Fatal(err)
	}
	if u, err := authenticate(path, "alice", "long enough"); err != nil || u.Role != RoleAdmin {
		t.Fatalf("authenticate: %+v %v", u, err)
	}
	for _, bad := range []string{"bob viewer", "bob boss $2a$04$abc", "bob viewer not-a-hash", "b/b viewer $2a$04$abc"} {
		data, _ := os.ReadFile(path)
		os.WriteFile(path+".bad", append(data, bad+"\n"...), 0o600)
		if _, err := readUsers(path + ".bad"); err == nil || !strings.Contains(err.Error(), path+".bad:3:") {
			t.Errorf("line %q: %v, want an error at line 3", bad, err)
		}
	}
	for _, c := range []struct {
		name string
		role Role
		pw   string
	}{{"bad name", RoleViewer, "long enough"}, {"bob", "root", "long enough"}, {"bob", RoleViewer, "short"}} {
		if err := SetPassword(path, c.name, c.role, c.pw); err == nil {
			t.Errorf("SetPassword(%q, %q, %q) succeeded", c.name, c.role, c.pw)
		}
	}
}
