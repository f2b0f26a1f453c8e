package dhcp

import (
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

// Ports of RFC 2131 section 4.1.
const (
	ServerPort = 67
	ClientPort = 68
)

const (
	// offerHold is how long an offered address waits for the client's REQUEST before another
	// client may get it. Clients request within a second or two; retries within a minute.
	offerHold = time.Minute
	// declineHold is how long an address a client declined (found in use by another host) is
	// handed to nobody. The host squatting on it is a misconfiguration an operator must fix;
	// ten minutes keeps the pool from cycling through it on every DISCOVER.
	declineHold = 10 * time.Minute
	// maxHostLen bounds a host name taken from a client (one DNS label).
	maxHostLen = 63
)

// Host is a reservation: the device with MAC always gets Addr, and is named Name.
type Host struct {
	Name string
	MAC  MAC
	Addr netip.Addr
}

// Settings is what the decision needs to know about the network it serves. Every field
// but Router and Domain is required; Server.New checks them.
type Settings struct {
	// ServerID is the box's address on the device network: the server identifier
	// (option 54) and the DNS server (option 6) every reply carries.
	ServerID netip.Addr
	// Subnet is the device network; replies carry its mask (option 1) and requests for
	// addresses outside it are refused.
	Subnet netip.Prefix
	// Start and End bound the dynamic pool, both included.
	Start, End netip.Addr
	// LeaseTime is the lease granted (option 51); renewal (T1) is at half, rebinding (T2) at
	// seven eighths of it.
	LeaseTime time.Duration
	// Router is sent as option 3. Zero: no router option: devices have nothing to route
	// through, the box answers their DNS and proxies their streams itself.
	Router netip.Addr
	// Domain is sent as option 15. Empty: none.
	Domain string
	// Hosts are the reservations.
	Hosts []Host
}

// ClientState is the client state RFC 2131 section 4.3.2 tells apart by a REQUEST's fields.
type ClientState string

const (
	StateSelecting  ClientState = "selecting"   // server identifier set: answering an offer
	StateInitReboot ClientState = "init-reboot" // requested address set, ciaddr zero: confirming after a restart
	// StateRenewing: ciaddr set. RENEWING (unicast to this server) and REBINDING (broadcast
	// to any) are answered alike: the ACK goes to ciaddr either way.
	StateRenewing ClientState = "renewing"
)

// Decision is what the server does with one client message. Apply Changes to the pool (and
// write them durably) before sending Reply.
type Decision struct {
	Reply   *dhcpv4.DHCPv4 // nil: stay silent
	To      netip.AddrPort // where Reply goes
	Changes []Change
	Event   *Event // the lease event to record; nil for a silent decision
	Reason  Reason
	State   ClientState // REQUEST only
}

var broadcast = netip.AddrPortFrom(netip.AddrFrom4([4]byte{255, 255, 255, 255}), ClientPort)

// Decide answers one client message at now from the pool, without changing it: RFC 2131
// section 4.3 for DISCOVER, REQUEST (in each client state), DECLINE, RELEASE and INFORM.
// Anything else, and anything malformed, gets no reply.
func Decide(req *dhcpv4.DHCPv4, pool *Pool, set *Settings, now time.Time) Decision {
	if req == nil || req.OpCode != dhcpv4.OpcodeBootRequest || req.HWType != iana.HWTypeEthernet || len(req.ClientHWAddr) != 6 {
		return Decision{Reason: ReasonMalformed}
	}
	d := decider{req: req, pool: pool, set: set, now: now, mac: MAC(req.ClientHWAddr)}
	if d.mac.IsZero() {
		return Decision{Reason: ReasonMalformed}
	}
	switch req.MessageType() {
	case dhcpv4.MessageTypeDiscover:
		return d.discover()
	case dhcpv4.MessageTypeRequest:
		return d.request()
	case dhcpv4.MessageTypeDecline:
		return d.decline()
	case dhcpv4.MessageTypeRelease:
		return d.release()
	case dhcpv4.MessageTypeInform:
		return d.inform()
	}
	return Decision{Reason: ReasonMalformed}
}

type decider struct {
	req  *dhcpv4.DHCPv4
	pool *Pool
	set  *Settings
	now  time.Time
	mac  MAC
}

// addr4 converts a header or option address; anything but a set IPv4 address is invalid.
func addr4(ip net.IP) netip.Addr {
	a, ok := netip.AddrFromSlice(ip.To4())
	if !ok || a.IsUnspecified() {
		return netip.Addr{}
	}
	return a
}

func (d *decider) reservation() (Host, bool) {
	for _, h := range d.set.Hosts {
		if h.MAC == d.mac {
			return h, true
		}
	}
	return Host{}, false
}

// reservedFor returns the MAC an address is reserved for.
func (d *decider) reservedFor(a netip.Addr) (MAC, bool) {
	for _, h := range d.set.Hosts {
		if h.Addr == a {
			return h.MAC, true
		}
	}
	return MAC{}, false
}

func (d *decider) inRange(a netip.Addr) bool {
	return a.Is4() && d.set.Start.Compare(a) <= 0 && a.Compare(d.set.End) <= 0
}

// usable reports whether a may be this client's: on the network, not the box or the
// router, not reserved for another device, inside the pool unless reserved for this one,
// and not held by anyone else (an active lease or a declined address).
func (d *decider) usable(a netip.Addr) bool {
	if !a.Is4() || !d.set.Subnet.Contains(a) || a == d.set.ServerID || a == d.set.Router ||
		a == d.set.Subnet.Masked().Addr() {
		return false
	}
	if owner, ok := d.reservedFor(a); ok {
		if owner != d.mac {
			return false
		}
	} else if !d.inRange(a) {
		return false
	}
	l, ok := d.pool.ByAddr(a)
	if !ok || !l.active(d.now) {
		return true
	}
	return l.MAC == d.mac && l.State != StateDeclined
}

// allocate picks the address to offer: the reservation, else the client's previous address,
// else the one it asks for, else a never-used address of the pool, else the one released
// longest ago.
func (d *decider) allocate() (netip.Addr, Reason, bool) {
	if h, ok := d.reservation(); ok {
		return h.Addr, ReasonReserved, d.usable(h.Addr)
	}
	if l, ok := d.pool.ByMAC(d.mac); ok && d.usable(l.Addr) {
		return l.Addr, ReasonLeased, true
	}
	if a := addr4(d.req.RequestedIPAddress()); a.IsValid() && d.usable(a) {
		return a, ReasonLeased, true
	}
	var oldest *Lease
	for a := d.set.Start; a.IsValid() && a.Compare(d.set.End) <= 0; a = a.Next() {
		if !d.usable(a) {
			continue
		}
		l, ok := d.pool.ByAddr(a)
		if !ok {
			return a, ReasonLeased, true
		}
		if oldest == nil || byExpiry(l, *oldest) < 0 {
			oldest = &l
		}
	}
	if oldest != nil {
		return oldest.Addr, ReasonLeased, true
	}
	return netip.Addr{}, ReasonPoolFull, false
}

// hostName is the device's name: its reservation's, else the name it sends (option 12,
// cleaned to one lower-case label), else the name it had.
func (d *decider) hostName() string {
	if h, ok := d.reservation(); ok {
		return h.Name
	}
	if n := CleanHostName(d.req.HostName()); n != "" {
		return n
	}
	if l, ok := d.pool.ByMAC(d.mac); ok {
		return l.Host
	}
	return ""
}

// CleanHostName keeps what a DNS label may hold (letters, digits, '-', '_'), lower case, up
// to 63 bytes; a client's option 12 is untrusted bytes. Empty when nothing usable is left.
func CleanHostName(s string) string {
	var b strings.Builder
	for _, c := range strings.ToLower(s) {
		if b.Len() == maxHostLen {
			break
		}
		if c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' {
			b.WriteRune(c)
		}
	}
	return strings.Trim(b.String(), "-")
}

func (d *decider) discover() Decision {
	a, reason, ok := d.allocate()
	if !ok {
		return Decision{Reason: ReasonPoolFull}
	}
	l := Lease{Addr: a, MAC: d.mac, Host: d.hostName(), State: StateOffered, Expires: d.now.Add(offerHold)}
	var changes []Change
	if prev, ok := d.pool.ByAddr(a); ok && prev.MAC == d.mac && prev.State == StateBound && prev.active(d.now) {
		l = prev // offering the lease it holds: it stays bound
		l.Host = d.hostName()
	} else {
		changes = []Change{{Put: &l}}
	}
	return d.answer(dhcpv4.MessageTypeOffer, l, reason, EventOffer, changes)
}

func (d *decider) request() Decision {
	sid := addr4(d.req.ServerIdentifier())
	requested := addr4(d.req.RequestedIPAddress())
	ciaddr := addr4(d.req.ClientIPAddr)
	var dec Decision
	switch {
	case sid.IsValid():
		dec = d.selecting(sid, requested)
		dec.State = StateSelecting
	case requested.IsValid() && !ciaddr.IsValid():
		dec = d.confirm(requested, true)
		dec.State = StateInitReboot
	case ciaddr.IsValid():
		dec = d.confirm(ciaddr, false)
		dec.State = StateRenewing
	default:
		dec = Decision{Reason: ReasonMalformed}
	}
	return dec
}

// selecting answers a REQUEST that names a server: the client took one offer and tells
// every server which (RFC 2131 section 4.3.2, SELECTING).
func (d *decider) selecting(sid, requested netip.Addr) Decision {
	l, has := d.pool.ByMAC(d.mac)
	if sid != d.set.ServerID {
		// Another server's offer won: the address offered here is free again.
		if has && l.State == StateOffered {
			return Decision{Reason: ReasonOtherServer, Changes: []Change{{Delete: l.Addr}}}
		}
		return Decision{Reason: ReasonOtherServer}
	}
	if !requested.IsValid() {
		return Decision{Reason: ReasonMalformed}
	}
	if !has || l.Addr != requested || l.State == StateDeclined || !d.usable(requested) {
		return d.nak(requested, ReasonNotLeased)
	}
	return d.ack(requested)
}

// confirm answers INIT-REBOOT (the client asks to keep the address it remembers) and
// RENEWING/REBINDING (it holds the address and asks for more time).
func (d *decider) confirm(a netip.Addr, initReboot bool) Decision {
	if !d.set.Subnet.Contains(a) {
		return d.nak(a, ReasonWrongNetwork)
	}
	l, has := d.pool.ByMAC(d.mac)
	if has && l.Addr == a && d.usable(a) {
		return d.ack(a)
	}
	if !d.usable(a) {
		return d.nak(a, ReasonAddressTaken)
	}
	if initReboot {
		if has {
			return d.nak(a, ReasonNotLeased) // this server gave the client another address
		}
		// RFC 2131 section 4.3.2: "If the DHCP server has no record of this client, then it
		// MUST remain silent", another server may hold its lease.
		return Decision{Reason: ReasonUnknownClient}
	}
	if h, ok := d.reservation(); ok && h.Addr != a {
		return d.nak(a, ReasonNotLeased) // move the device to its reserved address
	}
	// A client renewing a free pool address this server has no record of (the lease file
	// was lost, or the pool was moved): it is the only one using it, so it may keep it.
	return d.ack(a)
}

func (d *decider) ack(a netip.Addr) Decision {
	reason := ReasonLeased
	if _, ok := d.reservation(); ok {
		reason = ReasonReserved
	}
	l := Lease{Addr: a, MAC: d.mac, Host: d.hostName(), State: StateBound, Expires: d.now.Add(d.set.LeaseTime)}
	return d.answer(dhcpv4.MessageTypeAck, l, reason, EventAck, []Change{{Put: &l}})
}

func (d *decider) nak(a netip.Addr, reason Reason) Decision {
	reply, err := dhcpv4.NewReplyFromRequest(d.req,
		dhcpv4.WithMessageType(dhcpv4.MessageTypeNak),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(d.set.ServerID.AsSlice())),
	)
	if err != nil {
		return Decision{Reason: ReasonMalformed}
	}
	to := broadcast
	if g := addr4(d.req.GatewayIPAddr); g.IsValid() {
		reply.SetBroadcast()
		to = netip.AddrPortFrom(g, ServerPort)
	}
	ev := &Event{Time: d.now, Kind: EventNak, Reason: reason, Lease: Lease{Addr: a, MAC: d.mac, Host: d.hostName()}}
	return Decision{Reply: reply, To: to, Event: ev, Reason: reason}
}

// decline: the client found its address in use by another host (RFC 2131 section 4.3.3).
func (d *decider) decline() Decision {
	if sid := addr4(d.req.ServerIdentifier()); sid.IsValid() && sid != d.set.ServerID {
		return Decision{Reason: ReasonOtherServer}
	}
	a := addr4(d.req.RequestedIPAddress())
	l, has := d.pool.ByMAC(d.mac)
	if !has || l.Addr != a || l.State == StateReleased {
		return Decision{Reason: ReasonNotHeld}
	}
	bad := Lease{Addr: a, MAC: d.mac, Host: l.Host, State: StateDeclined, Expires: d.now.Add(declineHold)}
	return Decision{
		Changes: []Change{{Put: &bad}},
		Event:   &Event{Time: d.now, Kind: EventDecline, Lease: bad},
	}
}

// release: the client gives its address back (RFC 2131 section 4.3.4). The record stays,
// released, so that the client gets the same address next time if nobody took it.
func (d *decider) release() Decision {
	if sid := addr4(d.req.ServerIdentifier()); sid.IsValid() && sid != d.set.ServerID {
		return Decision{Reason: ReasonOtherServer}
	}
	a := addr4(d.req.ClientIPAddr)
	l, has := d.pool.ByMAC(d.mac)
	if !has || l.Addr != a || l.State != StateBound {
		return Decision{Reason: ReasonNotHeld}
	}
	l.State, l.Expires = StateReleased, d.now
	return Decision{
		Changes: []Change{{Put: &l}},
		Event:   &Event{Time: d.now, Kind: EventRelease, Lease: l},
	}
}

// inform: a client with an address of its own asks for the other settings: an ACK with
// them and no lease (RFC 2131 section 4.3.5).
func (d *decider) inform() Decision {
	a := addr4(d.req.ClientIPAddr)
	if !a.IsValid() {
		return Decision{Reason: ReasonMalformed}
	}
	l := Lease{Addr: a, MAC: d.mac, Host: d.hostName()}
	return d.answer(dhcpv4.MessageTypeAck, l, "", EventInform, nil)
}

// answer builds an OFFER or ACK for l with every option the device needs, and no router
// unless the config names one.
func (d *decider) answer(mt dhcpv4.MessageType, l Lease, reason Reason, kind EventKind, changes []Change) Decision {
	s := d.set
	mods := []dhcpv4.Modifier{
		dhcpv4.WithMessageType(mt),
		dhcpv4.WithServerIP(s.ServerID.AsSlice()),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(s.ServerID.AsSlice())),
		dhcpv4.WithOption(dhcpv4.OptSubnetMask(net.CIDRMask(s.Subnet.Bits(), 32))),
		dhcpv4.WithOption(dhcpv4.OptDNS(s.ServerID.AsSlice())),
	}
	if kind != EventInform {
		// RFC 2131 section 4.3.5: an INFORM's ACK carries no lease time and no yiaddr.
		mods = append(mods,
			dhcpv4.WithYourIP(l.Addr.AsSlice()),
			dhcpv4.WithOption(dhcpv4.OptIPAddressLeaseTime(s.LeaseTime)),
			dhcpv4.WithOption(dhcpv4.OptRenewTimeValue(s.LeaseTime/2)),
			dhcpv4.WithOption(dhcpv4.OptRebindingTimeValue(s.LeaseTime/8*7)),
		)
	}
	if s.Router.IsValid() {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptRouter(s.Router.AsSlice())))
	}
	if s.Domain != "" {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptDomainName(s.Domain)))
	}
	if _, ok := d.reservation(); ok && l.Host != "" {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptHostName(l.Host)))
	}
	reply, err := dhcpv4.NewReplyFromRequest(d.req, mods...)
	if err != nil {
		return Decision{Reason: ReasonMalformed}
	}
	// RFC 2131 section 4.1: to the relay if there is one, else to ciaddr if the client has
	// an address, else broadcast. (Unicast to yiaddr before the client has it would need an
	// ARP entry or a raw socket; broadcast needs neither and every client accepts it.)
	to := broadcast
	if g := addr4(d.req.GatewayIPAddr); g.IsValid() {
		to = netip.AddrPortFrom(g, ServerPort)
	} else if c := addr4(d.req.ClientIPAddr); c.IsValid() {
		to = netip.AddrPortFrom(c, ClientPort)
	}
	ev := &Event{Time: d.now, Kind: kind, Reason: reason, Lease: l}
	return Decision{Reply: reply, To: to, Changes: changes, Event: ev, Reason: reason}
}
