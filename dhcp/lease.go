package dhcp

import (
	"cmp"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// MAC is an Ethernet hardware address. The zero MAC is "no client" (a declined address).
type MAC [6]byte

// ParseMAC reads six hex octets separated by colons or dashes ("00:1b:1b:aa:bb:07").
func ParseMAC(s string) (MAC, error) {
	hw, err := net.ParseMAC(s)
	if err != nil || len(hw) != 6 {
		return MAC{}, fmt.Errorf("dhcp: %q is not an Ethernet MAC address such as 00:1b:1b:aa:bb:07", s)
	}
	return MAC(hw), nil
}

// String returns the MAC in lower-case colon form.
func (m MAC) String() string {
	var b strings.Builder
	for i, o := range m {
		if i > 0 {
			b.WriteByte(':')
		}
		b.WriteString(hex.EncodeToString([]byte{o}))
	}
	return b.String()
}

// IsZero reports whether m is the zero MAC.
func (m MAC) IsZero() bool { return m == MAC{} }

// MarshalText writes the colon form, so leases.json and the admin API carry readable MACs.
func (m MAC) MarshalText() ([]byte, error) { return []byte(m.String()), nil }

// UnmarshalText reads what MarshalText writes.
func (m *MAC) UnmarshalText(b []byte) error {
	v, err := ParseMAC(string(b))
	if err != nil {
		return err
	}
	*m = v
	return nil
}

// State is where a lease stands.
type State string

const (
	// StateOffered: offered to a DISCOVER and held for the client's REQUEST (offerHold).
	StateOffered State = "offered"
	// StateBound: acknowledged; the client holds the address until Expires.
	StateBound State = "bound"
	// StateReleased: the client gave the address back, or its lease expired. The record
	// stays so that the same client gets the same address again while nobody else took it.
	StateReleased State = "released"
	// StateDeclined: a client reported the address in use by someone else (DECLINE); it is
	// handed to nobody until Expires. MAC is the client that declined it.
	StateDeclined State = "declined"
)

// Lease is one address and who holds it. A Lease is a value: the pool never shares one.
type Lease struct {
	Addr    netip.Addr `json:"addr"`
	MAC     MAC        `json:"mac"`
	Host    string     `json:"host,omitempty"` // from the reservation, else the client's option 12
	State   State      `json:"state"`
	Expires time.Time  `json:"expires"` // bound: lease end; offered: offer hold; declined: quarantine end
}

// active reports whether the lease keeps its address from other clients at now.
func (l *Lease) active(now time.Time) bool {
	return l.State != StateReleased && now.Before(l.Expires)
}

// Pool is the server's lease state: at most one lease per address and one per MAC (a
// declined address is kept by address only). The zero Pool is empty and usable. Decide reads
// a Pool and never changes it; Apply does.
type Pool struct {
	byAddr map[netip.Addr]Lease
	byMAC  map[MAC]netip.Addr // clients' leases; declined addresses are not in it
}

// NewPool builds a pool from leases (as read from the lease file); a later lease for the same
// address or MAC replaces an earlier one.
func NewPool(leases []Lease) *Pool {
	p := &Pool{}
	for _, l := range leases {
		p.put(l)
	}
	return p
}

// ByAddr returns the lease of an address.
func (p *Pool) ByAddr(a netip.Addr) (Lease, bool) {
	l, ok := p.byAddr[a]
	return l, ok
}

// ByMAC returns a client's lease (offered, bound or released).
func (p *Pool) ByMAC(m MAC) (Lease, bool) {
	a, ok := p.byMAC[m]
	if !ok {
		return Lease{}, false
	}
	return p.ByAddr(a)
}

// Leases returns every lease, by address.
func (p *Pool) Leases() []Lease {
	out := make([]Lease, 0, len(p.byAddr))
	for _, l := range p.byAddr {
		out = append(out, l)
	}
	slices.SortFunc(out, func(a, b Lease) int { return a.Addr.Compare(b.Addr) })
	return out
}

// Change is one edit of the pool: Put a lease, or Delete the lease of an address.
type Change struct {
	Put    *Lease
	Delete netip.Addr
}

// Apply makes the changes of a Decision or of Expire.
func (p *Pool) Apply(changes []Change) {
	for _, c := range changes {
		if c.Put != nil {
			p.put(*c.Put)
		} else {
			p.delete(c.Delete)
		}
	}
}

func (p *Pool) put(l Lease) {
	if p.byAddr == nil {
		p.byAddr, p.byMAC = map[netip.Addr]Lease{}, map[MAC]netip.Addr{}
	}
	p.delete(l.Addr)
	if l.State != StateDeclined {
		if prev, ok := p.byMAC[l.MAC]; ok {
			delete(p.byAddr, prev) // one lease per client: the old address is free again
		}
		p.byMAC[l.MAC] = l.Addr
	}
	p.byAddr[l.Addr] = l
}

func (p *Pool) delete(a netip.Addr) {
	old, ok := p.byAddr[a]
	if !ok {
		return
	}
	delete(p.byAddr, a)
	if old.State != StateDeclined && p.byMAC[old.MAC] == a {
		delete(p.byMAC, old.MAC)
	}
}

// Expire returns what time does to the pool at now: bound leases past their end become
// released (an expire event each), offers not taken up are dropped, and declined addresses
// whose quarantine is over are freed.
func Expire(p *Pool, now time.Time) ([]Change, []Event) {
	var changes []Change
	var events []Event
	for _, l := range p.Leases() {
		if now.Before(l.Expires) || l.State == StateReleased {
			continue
		}
		switch l.State {
		case StateBound:
			r := l
			r.State = StateReleased
			changes = append(changes, Change{Put: &r})
			events = append(events, Event{Kind: EventExpire, Lease: r})
		case StateOffered, StateDeclined:
			changes = append(changes, Change{Delete: l.Addr})
		}
	}
	return changes, events
}

// byExpiry orders released leases oldest first: the address given out again first is the
// one whose owner is least likely to come back for it.
func byExpiry(a, b Lease) int {
	return cmp.Or(a.Expires.Compare(b.Expires), a.Addr.Compare(b.Addr))
}
