package appliance

import (
	"errors"
	"net/http"
	"net/netip"

	"github.com/lnm-project/lnm/adminapi"
	"github.com/lnm-project/lnm/audit"
	"github.com/lnm-project/lnm/config"
	"github.com/lnm-project/lnm/dhcp"
	"github.com/lnm-project/lnm/store"
)

// The DHCP server's wiring: its settings from the config, its leases into the store's lease
// table and the trail's device names, its events into dhcp records, and the admin endpoint.

// dhcpConfig derives the DHCP server's settings. The DNS server it hands out (and its
// server identifier) is the IPv4 listen address; with a wildcard listen, the interface's.
func (rt *Runtime) dhcpConfig(cfg *config.Config) dhcp.Config {
	x := cfg.DHCP
	set := dhcp.Settings{
		Subnet: x.Subnet, Start: x.Start, End: x.End, LeaseTime: x.Lease,
		Router: x.Router, Domain: x.Domain,
	}
	for _, a := range cfg.Listen {
		if a.Is4() && !a.IsUnspecified() {
			set.ServerID = a
		}
	}
	for _, h := range x.Hosts {
		set.Hosts = append(set.Hosts, dhcp.Host{Name: h.Name, MAC: h.MAC, Addr: h.Addr})
	}
	return dhcp.Config{
		Interface: x.Interface,
		Settings:  set,
		LeaseFile: x.LeaseFile,
		Logger:    rt.log,
		OnEvent:   rt.trail.onDHCP,
		OnLeases:  rt.onLeases,
	}
}

// onLeases is the DHCP server's OnLeases hook: the pool goes into the store's lease table,
// and the trail names clients by the bound leases.
func (rt *Runtime) onLeases(leases []dhcp.Lease) {
	rows := make([]store.Lease, len(leases))
	for i, l := range leases {
		rows[i] = store.Lease{Addr: l.Addr, MAC: l.MAC.String(), Device: l.Host, State: string(l.State), Expires: l.Expires}
	}
	if err := rt.store.SetLeases(rows); err != nil {
		rt.log.Error("leases not stored", "err", err)
		return
	}
	rt.trail.setDevices(rt.store.Leases())
}

// device is what the trail writes on a leased client's records.
type device struct{ name, mac string }

// setDevices replaces the trail's address → device map with the bound leases of the lease
// table. Records read it on the data path, so it is swapped whole, never edited.
func (t *trail) setDevices(leases []store.Lease) {
	m := make(map[netip.Addr]device, len(leases))
	for _, l := range leases {
		if l.State == string(dhcp.StateBound) {
			m[l.Addr] = device{name: l.Device, mac: l.MAC}
		}
	}
	t.devices.Store(&m)
}

// nameDevice fills in the record's device and MAC from the lease that holds its client's
// address. A box without DHCP has no map and pays one atomic load.
func (t *trail) nameDevice(r *audit.Record) {
	if r.Device != "" || !r.Client.IsValid() {
		return
	}
	m := t.devices.Load()
	if m == nil {
		return
	}
	if d, ok := (*m)[r.Client.Addr().Unmap()]; ok {
		r.Device, r.MAC = d.name, d.mac
	}
}

// onDHCP is the DHCP server's OnEvent hook: a dhcp record per lease event.
func (t *trail) onDHCP(ev dhcp.Event) {
	r := &audit.Record{
		Time:   ev.Time,
		Kind:   audit.KindDHCP,
		Event:  string(ev.Kind),
		Reason: string(ev.Reason),
		Client: netip.AddrPortFrom(ev.Lease.Addr, 0),
		Device: ev.Lease.Host,
		MAC:    ev.Lease.MAC.String(),
	}
	// A failing log counts what it refuses; the lease stands either way (it is durable in
	// the lease file), so there is nothing to undo.
	_ = t.record(r)
}

// errNoDHCP answers the leases endpoint on a box without a dhcp block.
var errNoDHCP = errors.New("this box serves no DHCP: its config has no dhcp block")

// dhcpLeases answers GET /v1/dhcp/leases from the store's lease table.
func (a *adminServer) dhcpLeases(w http.ResponseWriter, r *http.Request) {
	cfg := a.rt.config()
	if cfg.DHCP == nil || a.rt.dhcp == nil {
		apiError(w, http.StatusNotFound, errNoDHCP)
		return
	}
	out := adminapi.DHCPLeases{Interface: cfg.DHCP.Interface, Leases: []adminapi.DHCPLease{}}
	for _, l := range a.rt.store.Leases() {
		out.Leases = append(out.Leases, adminapi.DHCPLease{Addr: l.Addr, MAC: l.MAC, Device: l.Device, State: l.State, Expires: l.Expires})
	}
	writeJSON(w, out)
}
