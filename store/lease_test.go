package store

import (
	"net/netip"
	"testing"
	"time"

	"github.com/lnm-project/lnm/audit"
)

func TestLeases(t *testing.T) {
	s, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 11, 28, 7, 0, 0, 0, time.UTC)
	a := func(s string) netip.Addr { return netip.MustParseAddr(s) }
	leases := []Lease{
		{Addr: a("198.18.3.101"), MAC: "02:00:00:00:00:0b", Device: "b", State: "bound", Expires: t0},
		{Addr: a("198.18.3.20"), MAC: "00:1b:1b:aa:bb:07", Device: "plc-07", State: "bound", Expires: t0},
		{Addr: a("198.18.3.100"), MAC: "02:00:00:00:00:0b", State: "declined", Expires: t0},
	}
	if err := s.SetLeases(leases); err != nil {
		t.Fatal(err)
	}
	got := s.Leases()
	if len(got) != 3 || got[0].Addr != a("198.18.3.20") || got[2].Addr != a("198.18.3.101") {
		t.Fatalf("Leases %+v, want three by address", got)
	}
	if l, ok := s.LeaseByAddr(a("::ffff:198.18.3.20")); !ok || l.Device != "plc-07" {
		t.Fatalf("LeaseByAddr (4in6) = %+v, %v", l, ok)
	}
	if ls := s.LeasesByMAC("02:00:00:00:00:0b"); len(ls) != 2 || ls[0].State != "declined" {
		t.Fatalf("LeasesByMAC %+v", ls)
	}
	if ls := s.LeasesByMAC("02:00:00:00:00:0"); len(ls) != 0 {
		t.Fatalf("a MAC prefix matched %+v", ls)
	}
	// A replacement drops what the pool no longer holds.
	if err := s.SetLeases(leases[1:2]); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.LeaseByAddr(a("198.18.3.101")); ok || len(s.Leases()) != 1 {
		t.Fatalf("after replacement: %+v", s.Leases())
	}
	// Leases are not records.
	if st := s.Stats(); st.Records() != 0 {
		t.Fatalf("stats count leases as records: %+v", st)
	}
	if err := s.SetLeases([]Lease{{MAC: "x"}}); err == nil {
		t.Fatal("a lease without an address was accepted")
	}
}

// TestQueryDevice: the device and MAC of dns records survive the compact block rows, and a
// device filter finds them among other clients' records of every table.
func TestQueryDevice(t *testing.T) {
	s, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 11, 28, 7, 0, 0, 0, time.UTC)
	plc := netip.MustParseAddrPort("198.18.3.20:0")
	other := netip.MustParseAddrPort("198.18.3.21:0")
	recs := []*audit.Record{
		{Seq: 1, Time: t0, Kind: audit.KindDNS, Client: plc, Device: "plc-07", MAC: "00:1b:1b:aa:bb:07", Name: "a.test", Verdict: audit.VerdictAllow},
		{Seq: 2, Time: t0, Kind: audit.KindDNS, Client: other, Name: "a.test", Verdict: audit.VerdictAllow},
		{Seq: 3, Time: t0, Kind: audit.KindConn, Event: audit.EventOpen, Client: netip.AddrPortFrom(plc.Addr(), 4000), Device: "plc-07", MAC: "00:1b:1b:aa:bb:07", SNI: "a.test"},
		{Seq: 4, Time: t0, Kind: audit.KindDHCP, Event: "ack", Client: plc, Device: "plc-07", MAC: "00:1b:1b:aa:bb:07"},
	}
	for _, r := range recs {
		s.Add(r)
	}
	got := s.Query(audit.Filter{Device: "plc-07"})
	if len(got) != 3 || got[0].Seq != 1 || got[1].Seq != 3 || got[2].Seq != 4 {
		t.Fatalf("device filter found %+v", got)
	}
	if got[0].MAC != "00:1b:1b:aa:bb:07" || got[0].Device != "plc-07" {
		t.Fatalf("dns record read back as %+v", got[0])
	}
}
