package dhcp

import (
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

var (
	t0       = time.Date(2026, 11, 28, 7, 0, 0, 0, time.UTC)
	serverID = netip.MustParseAddr("198.18.3.1")
	otherSrv = netip.MustParseAddr("198.18.3.2")
	macA     = MAC{0x02, 0, 0, 0, 0, 0x0a}
	macB     = MAC{0x02, 0, 0, 0, 0, 0x0b}
	macC     = MAC{0x02, 0, 0, 0, 0, 0x0c}
	macPLC   = MAC{0x00, 0x1b, 0x1b, 0xaa, 0xbb, 0x07}
)

func ip(s string) netip.Addr { return netip.MustParseAddr(s) }

// testSettings: a pool of three addresses, .100 to .102, and one reservation.
func testSettings() *Settings {
	return &Settings{
		ServerID:  serverID,
		Subnet:    netip.MustParsePrefix("198.18.3.0/24"),
		Start:     ip("198.18.3.100"),
		End:       ip("198.18.3.102"),
		LeaseTime: time.Hour,
		Hosts:     []Host{{Name: "plc-07", MAC: macPLC, Addr: ip("198.18.3.20")}},
	}
}

// msg builds a client message.
func msg(t *testing.T, mt dhcpv4.MessageType, mac MAC, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	t.Helper()
	m, err := dhcpv4.New(append([]dhcpv4.Modifier{dhcpv4.WithHwAddr(net.HardwareAddr(mac[:])), dhcpv4.WithMessageType(mt)}, mods...)...)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func requested(a string) dhcpv4.Modifier {
	return dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP(a)))
}
func sid(a netip.Addr) dhcpv4.Modifier {
	return dhcpv4.WithOption(dhcpv4.OptServerIdentifier(a.AsSlice()))
}
func ciaddr(a string) dhcpv4.Modifier { return dhcpv4.WithClientIP(net.ParseIP(a)) }
func hostname(n string) dhcpv4.Modifier {
	return dhcpv4.WithOption(dhcpv4.OptHostName(n))
}

func bound(a string, mac MAC, host string, expires time.Time) Lease {
	return Lease{Addr: ip(a), MAC: mac, Host: host, State: StateBound, Expires: expires}
}

func TestDecide(t *testing.T) {
	full := []Lease{
		bound("198.18.3.100", macB, "", t0.Add(time.Hour)),
		bound("198.18.3.101", macC, "", t0.Add(time.Hour)),
		{Addr: ip("198.18.3.102"), MAC: MAC{2, 0, 0, 0, 0, 0xd}, State: StateOffered, Expires: t0.Add(30 * time.Second)},
	}
	bcast := broadcast
	cases := []struct {
		name   string
		pool   []Lease
		req    func(t *testing.T) *dhcpv4.DHCPv4
		reply  dhcpv4.MessageType // 0: no reply
		yiaddr string             // "" with a reply: 0.0.0.0
		to     netip.AddrPort
		reason Reason
		event  EventKind // "": no event
		state  ClientState
		after  *Lease // macA's lease after the changes; nil: none
	}{
		{
			name: "discover: first free address", req: func(t *testing.T) *dhcpv4.DHCPv4 {
				return msg(t, dhcpv4.MessageTypeDiscover, macA, hostname("Sensor 1!"))
			},
			reply: dhcpv4.MessageTypeOffer, yiaddr: "198.18.3.100", to: bcast, reason: ReasonLeased, event: EventOffer,
			after: &Lease{Addr: ip("198.18.3.100"), MAC: macA, Host: "sensor1", State: StateOffered, Expires: t0.Add(offerHold)},
		},
		{
			name: "discover: the requested address when free", req: func(t *testing.T) *dhcpv4.DHCPv4 {
				return msg(t, dhcpv4.MessageTypeDiscover, macA, requested("198.18.3.102"))
			},
			reply: dhcpv4.MessageTypeOffer, yiaddr: "198.18.3.102", to: bcast, reason: ReasonLeased, event: EventOffer,
			after: &Lease{Addr: ip("198.18.3.102"), MAC: macA, State: StateOffered, Expires: t0.Add(offerHold)},
		},
		{
			name: "discover: a requested address outside the pool is not given",
			req: func(t *testing.T) *dhcpv4.DHCPv4 {
				return msg(t, dhcpv4.MessageTypeDiscover, macA, requested("198.18.3.50"))
			},
			reply: dhcpv4.MessageTypeOffer, yiaddr: "198.18.3.100", to: bcast, reason: ReasonLeased, event: EventOffer,
			after: &Lease{Addr: ip("198.18.3.100"), MAC: macA, State: StateOffered, Expires: t0.Add(offerHold)},
		},
		{
			name: "discover: a returning client gets its released address back",
			pool: []Lease{{Addr: ip("198.18.3.101"), MAC: macA, Host: "a", State: StateReleased, Expires: t0.Add(-time.Hour)}},
			req: func(t *testing.T) *dhcpv4.DHCPv4 {
				return msg(t, dhcpv4.MessageTypeDiscover, macA)
			},
			reply: dhcpv4.MessageTypeOffer, yiaddr: "198.18.3.101", to: bcast, reason: ReasonLeased, event: EventOffer,
			after: &Lease{Addr: ip("198.18.3.101"), MAC: macA, Host: "a", State: StateOffered, Expires: t0.Add(offerHold)},
		},
		{
			name: "discover: a bound client is offered its lease, which stays bound",
			pool: []Lease{bound("198.18.3.102", macA, "a", t0.Add(time.Minute))},
			req: func(t *testing.T) *dhcpv4.DHCPv4 {
				return msg(t, dhcpv4.MessageTypeDiscover, macA)
			},
			reply: dhcpv4.MessageTypeOffer, yiaddr: "198.18.3.102", to: bcast, reason: ReasonLeased, event: EventOffer,
			after: &Lease{Addr: ip("198.18.3.102"), MAC: macA, Host: "a", State: StateBound, Expires: t0.Add(time.Minute)},
		},
		{
			name: "discover: full pool stays silent", pool: full,
			req: func(t *testing.T) *dhcpv4.DHCPv4 {
				return msg(t, dhcpv4.MessageTypeDiscover, macA, requested("198.18.3.101"))
			},
			reason: ReasonPoolFull,
		},
		{
			name: "discover: full pool but an expired lease of another client",
			pool: append(slices.Clone(full[:2]), bound("198.18.3.102", MAC{2, 0, 0, 0, 0, 0xd}, "", t0.Add(-time.Second))),
			req: func(t *testing.T) *dhcpv4.DHCPv4 {
				return msg(t, dhcpv4.MessageTypeDiscover, macA)
			},
			reply: dhcpv4.MessageTypeOffer, yiaddr: "198.18.3.102", to: bcast, reason: ReasonLeased, event: EventOffer,
			after: &Lease{Addr: ip("198.18.3.102"), MAC: macA, State: StateOffered, Expires: t0.Add(offerHold)},
		},
		{
			name: "discover: a declined address is skipped",
			pool: []Lease{{Addr: ip("198.18.3.100"), MAC: macB, State: StateDeclined, Expires: t0.Add(time.Minute)}},
			req: func(t *testing.T) *dhcpv4.DHCPv4 {
				return msg(t, dhcpv4.MessageTypeDiscover, macA, requested("198.18.3.100"))
			},
			reply: dhcpv4.MessageTypeOffer, yiaddr: "198.18.3.101", to: bcast, reason: ReasonLeased, event: EventOffer,
			after: &Lease{Addr: ip("198.18.3.101"), MAC: macA, State: StateOffered, Expires: t0.Add(offerHold)},
		},
		{
			name: "discover: a reservation gets its address and name",
			req: func(t *testing.T) *dhcpv4.DHCPv4 {
				return msg(t, dhcpv4.MessageTypeDiscover, macPLC, hostname("factory-default"))
			},
			reply: dhcpv4.MessageTypeOffer, yiaddr: "198.18.3.20", to: bcast, reason: ReasonReserved, event: EventOffer,
		},
		{
			name: "discover: the client asks through a relay",
			req: func(t *testing.T) *dhcpv4.DHCPv4 {
				return msg(t, dhcpv4.MessageTypeDiscover, macA, dhcpv4.WithGatewayIP(net.ParseIP("198.18.3.254")))
			},
			reply: dhcpv4.MessageTypeOffer, yiaddr: "198.18.3.100", to: netip.MustParseAddrPort("198.18.3.254:67"), reason: ReasonLeased, event: EventOffer,
			after: &Lease{Addr: ip("198.18.3.100"), MAC: macA, State: StateOffered, Expires: t0.Add(offerHold)},
		},
		{
			name: "request selecting: the offer is acknowledged",
			pool: []Lease{{Addr: ip("198.18.3.101"), MAC: macA, Host: "a", State: StateOffered, Expires: t0.Add(time.Second)}},
			req: func(t *testing.T) *dhcpv4.DHCPv4 {
				return msg(t, dhcpv4.MessageTypeRequest, macA, sid(serverID), requested("198.18.3.101"))
			},
			reply: dhcpv4.MessageTypeAck, yiaddr: "198.18.3.101", to: bcast, reason: ReasonLeased, event: EventAck, state: StateSelecting,
			after: &Lease{Addr: ip("198.18.3.101"), MAC: macA, Host: "a", State: StateBound, Expires: t0.Add(time.Hour)},
		},
		{
			name: "request selecting another server: ignored, the offer freed",
			pool: []Lease{{Addr: ip("198.18.3.101"), MAC: macA, State: StateOffered, Expires: t0.Add(time.Second)}},
			req: func(t *testing.T) *dhcpv4.DHCPv4 {
				return msg(t, dhcpv4.MessageTypeRequest, macA, sid(otherSrv), requested("198.18.3.77"))
			},
			reason: ReasonOtherServer, state: StateSelecting,
		},
		{
			name: "request selecting an address not offered: nak",
			pool: []Lease{{Addr: ip("198.18.3.101"), MAC: macA, State: StateOffered, Expires: t0.Add(time.Second)}},
			req: func(t *testing.T) *dhcpv4.DHCPv4 {
				return msg(t, dhcpv4.MessageTypeRequest, macA, sid(serverID), requested("198.18.3.100"))
			},
			reply: dhcpv4.MessageTypeNak, to: bcast, reason: ReasonNotLeased, event: EventNak, state: StateSelecting,
			after: &Lease{Addr: ip("198.18.3.101"), MAC: macA, State: StateOffered, Expires: t0.Add(time.Second)},
		},
		{
			name: "request init-reboot: the client keeps its lease",
			pool: []Lease{bound("198.18.3.100", macA, "a", t0.Add(-time.Minute))},
			req: func(t *testing.T) *dhcpv4.DHCPv4 {
				return msg(t, dhcpv4.MessageTypeRequest, macA, requested("198.18.3.100"))
			},
			reply: dhcpv4.MessageTypeAck, yiaddr: "198.18.3.100", to: bcast, reason: ReasonLeased, event: EventAck, state: StateInitReboot,
			after: &Lease{Addr: ip("198.18.3.100"), MAC: macA, Host: "a", State: StateBound, Expires: t0.Add(time.Hour)},
		},
		{
			name: "request init-reboot on another network: nak",
			pool: []Lease{bound("198.18.3.100", macA, "a", t0.Add(time.Minute))},
			req: func(t *testing.T) *dhcpv4.DHCPv4 {
				return msg(t, dhcpv4.MessageTypeRequest, macA, requested("10.1.2.3"))
			},
			reply: dhcpv4.MessageTypeNak, to: bcast, reason: ReasonWrongNetwork, event: EventNak, state: StateInitReboot,
			after: &Lease{Addr: ip("198.18.3.100"), MAC: macA, Host: "a", State: StateBound, Expires: t0.Add(time.Minute)},
		},
		{
			name: "request init-reboot of a client without a record: silent",
			req: func(t *testing.T) *dhcpv4.DHCPv4 {
				return msg(t, dhcpv4.MessageTypeRequest, macA, requested("198.18.3.101"))
			},
			reason: ReasonUnknownClient, state: StateInitReboot,
		},
		{
			name: "request init-reboot for another client's address: nak",
			pool: []Lease{bound("198.18.3.101", macB, "b", t0.Add(time.Minute))},
			req: func(t *testing.T) *dhcpv4.DHCPv4 {
				return msg(t, dhcpv4.MessageTypeRequest, macA, requested("198.18.3.101"))
			},
			reply: dhcpv4.MessageTypeNak, to: bcast, reason: ReasonAddressTaken, event: EventNak, state: StateInitReboot,
		},
		{
			name: "request renewing (unicast): extended, ack to ciaddr",
			pool: []Lease{bound("198.18.3.100", macA, "a", t0.Add(time.Minute))},
			req: func(t *testing.T) *dhcpv4.DHCPv4 {
				return msg(t, dhcpv4.MessageTypeRequest, macA, ciaddr("198.18.3.100"))
			},
			reply: dhcpv4.MessageTypeAck, yiaddr: "198.18.3.100", to: netip.MustParseAddrPort("198.18.3.100:68"), reason: ReasonLeased, event: EventAck, state: StateRenewing,
			after: &Lease{Addr: ip("198.18.3.100"), MAC: macA, Host: "a", State: StateBound, Expires: t0.Add(time.Hour)},
		},
		{
			name: "request rebinding (broadcast): extended, ack to ciaddr",
			pool: []Lease{bound("198.18.3.100", macA, "a", t0.Add(time.Second))},
			req: func(t *testing.T) *dhcpv4.DHCPv4 {
				return msg(t, dhcpv4.MessageTypeRequest, macA, ciaddr("198.18.3.100"), dhcpv4.WithBroadcast(true), hostname("renamed"))
			},
			reply: dhcpv4.MessageTypeAck, yiaddr: "198.18.3.100", to: netip.MustParseAddrPort("198.18.3.100:68"), reason: ReasonLeased, event: EventAck, state: StateRenewing,
			after: &Lease{Addr: ip("198.18.3.100"), MAC: macA, Host: "renamed", State: StateBound, Expires: t0.Add(time.Hour)},
		},
		{
			name: "request renewing an address another client holds: nak",
			pool: []Lease{bound("198.18.3.100", macB, "b", t0.Add(time.Minute))},
			req: func(t *testing.T) *dhcpv4.DHCPv4 {
				return msg(t, dhcpv4.MessageTypeRequest, macA, ciaddr("198.18.3.100"))
			},
			reply: dhcpv4.MessageTypeNak, to: bcast, reason: ReasonAddressTaken, event: EventNak, state: StateRenewing,
		},
		{
			name: "request renewing a reserved address of another device: nak",
			req: func(t *testing.T) *dhcpv4.DHCPv4 {
				return msg(t, dhcpv4.MessageTypeRequest, macA, ciaddr("198.18.3.20"))
			},
			reply: dhcpv4.MessageTypeNak, to: bcast, reason: ReasonAddressTaken, event: EventNak, state: StateRenewing,
		},
		{
			name: "decline: the address is quarantined, no reply",
			pool: []Lease{bound("198.18.3.100", macA, "a", t0.Add(time.Hour))},
			req: func(t *testing.T) *dhcpv4.DHCPv4 {
				return msg(t, dhcpv4.MessageTypeDecline, macA, sid(serverID), requested("198.18.3.100"))
			},
			event: EventDecline,
		},
		{
			name: "decline of an address the client does not hold: silent",
			pool: []Lease{bound("198.18.3.100", macB, "b", t0.Add(time.Hour))},
			req: func(t *testing.T) *dhcpv4.DHCPv4 {
				return msg(t, dhcpv4.MessageTypeDecline, macA, requested("198.18.3.100"))
			},
			reason: ReasonNotHeld,
		},
		{
			name: "release: the lease is kept as released",
			pool: []Lease{bound("198.18.3.100", macA, "a", t0.Add(time.Hour))},
			req: func(t *testing.T) *dhcpv4.DHCPv4 {
				return msg(t, dhcpv4.MessageTypeRelease, macA, sid(serverID), ciaddr("198.18.3.100"))
			},
			event: EventRelease,
			after: &Lease{Addr: ip("198.18.3.100"), MAC: macA, Host: "a", State: StateReleased, Expires: t0},
		},
		{
			name: "release to another server: ignored",
			pool: []Lease{bound("198.18.3.100", macA, "a", t0.Add(time.Hour))},
			req: func(t *testing.T) *dhcpv4.DHCPv4 {
				return msg(t, dhcpv4.MessageTypeRelease, macA, sid(otherSrv), ciaddr("198.18.3.100"))
			},
			reason: ReasonOtherServer,
			after:  &Lease{Addr: ip("198.18.3.100"), MAC: macA, Host: "a", State: StateBound, Expires: t0.Add(time.Hour)},
		},
		{
			name: "inform: settings without a lease, to ciaddr",
			req: func(t *testing.T) *dhcpv4.DHCPv4 {
				return msg(t, dhcpv4.MessageTypeInform, macA, ciaddr("198.18.3.9"), hostname("static-box"))
			},
			reply: dhcpv4.MessageTypeAck, to: netip.MustParseAddrPort("198.18.3.9:68"), event: EventInform,
		},
		{
			name: "a server message is dropped",
			req: func(t *testing.T) *dhcpv4.DHCPv4 {
				m := msg(t, dhcpv4.MessageTypeOffer, macA)
				m.OpCode = dhcpv4.OpcodeBootReply
				return m
			},
			reason: ReasonMalformed,
		},
		{
			name: "a request without message type is dropped",
			req: func(t *testing.T) *dhcpv4.DHCPv4 {
				m := msg(t, dhcpv4.MessageTypeDiscover, macA)
				m.Options.Del(dhcpv4.OptionDHCPMessageType)
				return m
			},
			reason: ReasonMalformed,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pool := NewPool(tc.pool)
			before := pool.Leases()
			req := tc.req(t)
			d := Decide(req, pool, testSettings(), t0)
			if !slices.Equal(pool.Leases(), before) {
				t.Fatalf("Decide changed the pool")
			}
			if d.Reason != tc.reason {
				t.Errorf("reason %q, want %q", d.Reason, tc.reason)
			}
			if d.State != tc.state {
				t.Errorf("client state %q, want %q", d.State, tc.state)
			}
			switch {
			case tc.event == "" && d.Event != nil:
				t.Errorf("event %+v, want none", *d.Event)
			case tc.event != "" && (d.Event == nil || d.Event.Kind != tc.event):
				t.Errorf("event %+v, want %s", d.Event, tc.event)
			}
			if tc.reply == 0 {
				if d.Reply != nil {
					t.Fatalf("reply %s, want none", d.Reply.Summary())
				}
			} else {
				checkReply(t, req, d, tc.reply, tc.yiaddr, tc.to)
			}
			pool.Apply(d.Changes)
			got, ok := pool.ByMAC(macA)
			switch {
			case tc.after == nil && ok && got.State != StateDeclined:
				t.Errorf("macA holds %+v, want nothing", got)
			case tc.after != nil && (!ok || got != *tc.after):
				t.Errorf("macA holds %+v (%v), want %+v", got, ok, *tc.after)
			}
		})
	}
}

// checkReply checks the reply's header and the options every reply must (and must not) carry.
func checkReply(t *testing.T, req *dhcpv4.DHCPv4, d Decision, mt dhcpv4.MessageType, yiaddr string, to netip.AddrPort) {
	t.Helper()
	r := d.Reply
	// The reply must survive its own wire form.
	r, err := dhcpv4.FromBytes(r.ToBytes())
	if err != nil {
		t.Fatalf("reply does not parse: %v", err)
	}
	if r.MessageType() != mt {
		t.Fatalf("reply %s, want %s", r.MessageType(), mt)
	}
	if r.OpCode != dhcpv4.OpcodeBootReply || r.TransactionID != req.TransactionID || !slices.Equal(r.ClientHWAddr, req.ClientHWAddr) {
		t.Errorf("reply header: op %s xid %s chaddr %s", r.OpCode, r.TransactionID, r.ClientHWAddr)
	}
	if d.To != to {
		t.Errorf("reply to %s, want %s", d.To, to)
	}
	if want := cmpOr(yiaddr, "0.0.0.0"); r.YourIPAddr.String() != want {
		t.Errorf("yiaddr %s, want %s", r.YourIPAddr, want)
	}
	if !r.ServerIdentifier().Equal(serverID.AsSlice()) {
		t.Errorf("server identifier %s, want %s", r.ServerIdentifier(), serverID)
	}
	if r.Options.Has(dhcpv4.OptionRouter) {
		t.Errorf("reply carries a router: %v", r.Router())
	}
	if mt == dhcpv4.MessageTypeNak {
		if r.Options.Has(dhcpv4.OptionDomainNameServer) || r.Options.Has(dhcpv4.OptionIPAddressLeaseTime) {
			t.Errorf("NAK carries settings: %s", r.Summary())
		}
		return
	}
	if dns := r.DNS(); len(dns) != 1 || !dns[0].Equal(serverID.AsSlice()) {
		t.Errorf("DNS servers %v, want only the box %s", dns, serverID)
	}
	if m := r.SubnetMask(); m.String() != "ffffff00" {
		t.Errorf("subnet mask %s, want /24", m)
	}
	inform := req.MessageType() == dhcpv4.MessageTypeInform
	if got := r.IPAddressLeaseTime(0); inform != (got == 0) || !inform && got != time.Hour {
		t.Errorf("lease time %v (inform %v)", got, inform)
	}
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func TestDecideReservation(t *testing.T) {
	set := testSettings()
	// The reserved address lies inside the pool: nobody else may get it.
	set.Hosts[0].Addr = ip("198.18.3.100")
	pool := NewPool(nil)
	d := Decide(msg(t, dhcpv4.MessageTypeDiscover, macA, requested("198.18.3.100")), pool, set, t0)
	if d.Reply == nil || d.Reply.YourIPAddr.String() != "198.18.3.101" {
		t.Fatalf("another device was offered %v, want 198.18.3.101 (.100 is reserved)", d.Reply)
	}
	d = Decide(msg(t, dhcpv4.MessageTypeDiscover, macPLC, hostname("ignored")), pool, set, t0)
	if d.Reply.YourIPAddr.String() != "198.18.3.100" || d.Reply.HostName() != "plc-07" || d.Event.Lease.Host != "plc-07" {
		t.Fatalf("reservation: yiaddr %s host %q, event %+v", d.Reply.YourIPAddr, d.Reply.HostName(), d.Event)
	}
	pool.Apply(d.Changes)
	d = Decide(msg(t, dhcpv4.MessageTypeRequest, macPLC, sid(serverID), requested("198.18.3.100")), pool, set, t0)
	if d.Reply.MessageType() != dhcpv4.MessageTypeAck || d.Reason != ReasonReserved {
		t.Fatalf("request of the reservation: %s %s", d.Reply.MessageType(), d.Reason)
	}
}

func TestDecideOptions(t *testing.T) {
	set := testSettings()
	set.Router = ip("198.18.3.254")
	set.Domain = "plant.internal"
	d := Decide(msg(t, dhcpv4.MessageTypeDiscover, macA), NewPool(nil), set, t0)
	r := d.Reply
	if rt := r.Router(); len(rt) != 1 || !rt[0].Equal(set.Router.AsSlice()) {
		t.Errorf("router %v, want %s", rt, set.Router)
	}
	if r.DomainName() != "plant.internal" {
		t.Errorf("domain %q", r.DomainName())
	}
	if t1, t2 := r.IPAddressRenewalTime(0), r.IPAddressRebindingTime(0); t1 != 30*time.Minute || t2 != 52*time.Minute+30*time.Second {
		t.Errorf("T1 %v T2 %v", t1, t2)
	}
}

// TestDecideDeclineThenDiscover: after a DECLINE the client is offered another address, and
// the declined one returns to the pool only when its quarantine is over.
func TestDecideDeclineThenDiscover(t *testing.T) {
	set := testSettings()
	pool := NewPool([]Lease{bound("198.18.3.100", macA, "a", t0.Add(time.Hour))})
	pool.Apply(Decide(msg(t, dhcpv4.MessageTypeDecline, macA, requested("198.18.3.100")), pool, set, t0).Changes)
	d := Decide(msg(t, dhcpv4.MessageTypeDiscover, macA), pool, set, t0)
	if got := d.Reply.YourIPAddr.String(); got != "198.18.3.101" {
		t.Fatalf("after decline offered %s, want 198.18.3.101", got)
	}
	later := t0.Add(declineHold + time.Second)
	changes, events := Expire(pool, later)
	pool.Apply(changes)
	if len(events) != 0 {
		t.Errorf("quarantine end recorded events %+v", events)
	}
	if _, ok := pool.ByAddr(ip("198.18.3.100")); ok {
		t.Errorf("declined address still held after its quarantine")
	}
}

func TestExpire(t *testing.T) {
	pool := NewPool([]Lease{
		bound("198.18.3.100", macA, "a", t0.Add(-time.Second)),
		bound("198.18.3.101", macB, "b", t0.Add(time.Second)),
		{Addr: ip("198.18.3.102"), MAC: macC, State: StateOffered, Expires: t0.Add(-time.Second)},
	})
	changes, events := Expire(pool, t0)
	pool.Apply(changes)
	if len(events) != 1 || events[0].Kind != EventExpire || events[0].Lease.MAC != macA || events[0].Lease.Host != "a" {
		t.Fatalf("events %+v, want one expire of macA", events)
	}
	if l, _ := pool.ByMAC(macA); l.State != StateReleased {
		t.Errorf("expired lease is %s, want released (kept for the same client)", l.State)
	}
	if l, _ := pool.ByMAC(macB); l.State != StateBound {
		t.Errorf("live lease is %s", l.State)
	}
	if _, ok := pool.ByMAC(macC); ok {
		t.Errorf("an offer not taken up is still held")
	}
	// Nothing left to expire: no events the second time.
	if _, events := Expire(pool, t0); len(events) != 0 {
		t.Errorf("second pass: %+v", events)
	}
}

func TestCleanHostName(t *testing.T) {
	for in, want := range map[string]string{
		"PLC-07":                "plc-07",
		"Sensor 1!":             "sensor1",
		"a\x00b\nc\"d":          "abcd",
		"-x-":                   "x",
		"":                      "",
		"ünïcode":               "ncode",
		string(make([]byte, 9)): "",
	} {
		if got := CleanHostName(in); got != want {
			t.Errorf("CleanHostName(%q) = %q, want %q", in, got, want)
		}
	}
	long := CleanHostName(string(slices.Repeat([]byte("a"), 100)))
	if len(long) != maxHostLen {
		t.Errorf("long name cleaned to %d bytes", len(long))
	}
}
