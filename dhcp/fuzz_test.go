package dhcp

import (
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// FuzzDecide feeds raw packets, as the socket would deliver them, through the parser into the
// decision core, against a pool with a lease of every state. Whatever arrives: no panic, a
// reply that parses, and no address handed to a client while another holds it.
// testdata/fuzz/FuzzDecide holds one packet of each message type and client state.
func FuzzDecide(f *testing.F) {
	f.Add([]byte{})
	set := testSettings()
	f.Fuzz(func(t *testing.T, data []byte) {
		req, err := dhcpv4.FromBytes(data)
		if err != nil {
			return
		}
		pool := NewPool([]Lease{
			bound("198.18.3.100", macB, "b", t0.Add(1e12)),
			{Addr: ip("198.18.3.101"), MAC: macC, State: StateDeclined, Expires: t0.Add(1e12)},
			{Addr: ip("198.18.3.102"), MAC: macA, State: StateReleased, Expires: t0},
		})
		d := Decide(req, pool, set, t0)
		if d.Reply == nil {
			return
		}
		if _, err := dhcpv4.FromBytes(d.Reply.ToBytes()); err != nil {
			t.Fatalf("reply does not parse: %v", err)
		}
		y := addr4(d.Reply.YourIPAddr)
		if !y.IsValid() {
			return
		}
		mac := MAC(req.ClientHWAddr)
		if l, ok := pool.ByAddr(y); ok && l.active(t0) && l.MAC != mac {
			t.Fatalf("%s given to %s while %s holds it (%s)", y, mac, l.MAC, l.State)
		}
		if owner, ok := (&decider{set: set}).reservedFor(y); ok && owner != mac {
			t.Fatalf("%s, reserved for %s, given to %s", y, owner, mac)
		}
		if !set.Subnet.Contains(y) || y == set.ServerID {
			t.Fatalf("%s handed out", y)
		}
	})
}
