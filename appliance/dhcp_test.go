package appliance

import (
	"context"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/lnm-project/lnm/audit"
	"github.com/lnm-project/lnm/dhcp"
	"github.com/lnm-project/lnm/resolver"
	"github.com/lnm-project/lnm/store"
)

// TestTrailNamesDevices: once the DHCP server reports its leases, the records of a client
// holding a bound lease carry its device and MAC; other clients' do not, and lease events
// are dhcp records.
func TestTrailNamesDevices(t *testing.T) {
	st, err := store.New(store.Config{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go st.Run(ctx)
	rt := &Runtime{store: st, log: slog.New(slog.DiscardHandler)}
	rt.trail = &trail{box: "l3", level: 3, store: st, metrics: newBoxMetrics(time.Now())}

	plc := dhcp.MAC{0x00, 0x1b, 0x1b, 0xaa, 0xbb, 0x07}
	t0 := time.Now()
	leases := []dhcp.Lease{
		{Addr: netip.MustParseAddr("198.18.3.20"), MAC: plc, Host: "plc-07", State: dhcp.StateBound, Expires: t0.Add(time.Hour)},
		{Addr: netip.MustParseAddr("198.18.3.100"), MAC: dhcp.MAC{2, 0, 0, 0, 0, 1}, Host: "gone", State: dhcp.StateReleased, Expires: t0},
	}
	query := func(client string) {
		if err := rt.trail.onQuery(resolver.QueryEvent{Time: t0, Client: netip.MustParseAddrPort(client + ":0"), Name: "a.test"}); err != nil {
			t.Fatal(err)
		}
	}
	query("198.18.3.20") // before any lease: no name
	rt.onLeases(leases)
	rt.trail.onDHCP(dhcp.Event{Time: t0, Kind: dhcp.EventAck, Reason: dhcp.ReasonReserved, Lease: leases[0]})
	query("198.18.3.20")
	query("198.18.3.100") // a released lease names nobody
	query("198.18.3.21")

	recs := st.Query(audit.Filter{})
	if len(recs) != 5 {
		t.Fatalf("%d records: %+v", len(recs), recs)
	}
	want := []struct {
		kind        audit.Kind
		device, mac string
	}{
		{audit.KindDNS, "", ""},
		{audit.KindDHCP, "plc-07", "00:1b:1b:aa:bb:07"},
		{audit.KindDNS, "plc-07", "00:1b:1b:aa:bb:07"},
		{audit.KindDNS, "", ""},
		{audit.KindDNS, "", ""},
	}
	for i, w := range want {
		r := recs[i]
		if r.Kind != w.kind || r.Device != w.device || r.MAC != w.mac {
			t.Errorf("record %d: kind %s device %q mac %q, want %s %q %q", i, r.Kind, r.Device, r.MAC, w.kind, w.device, w.mac)
		}
	}
	if r := recs[1]; r.Event != "ack" || r.Reason != "reserved" || r.Client.Addr().String() != "198.18.3.20" {
		t.Errorf("dhcp record %+v", r)
	}
	if got := st.Query(audit.Filter{Device: "plc-07"}); len(got) != 2 {
		t.Errorf("device filter found %d records, want 2", len(got))
	}
	if ls := st.Leases(); len(ls) != 2 || ls[0].Device != "plc-07" || ls[0].MAC != "00:1b:1b:aa:bb:07" {
		t.Errorf("lease table %+v", ls)
	}
}
