package config

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/lnm-project/lnm/allowlist"
	"github.com/lnm-project/lnm/dhcp"
)

// DHCP is the embedded DHCPv4 server's block:
//
//	dhcp south0 {
//	    range  198.18.3.100 198.18.3.199
//	    lease  12h
//	    host   plc-07 00:1b:1b:aa:bb:07 198.18.3.20
//	}
//
// Each field's comment names its property and what its zero value does.
type DHCP struct {
	// Interface is the device-side interface served (the directive's argument); the server
	// binds there only (SO_BINDTODEVICE).
	Interface string
	// Start and End bound the pool (`range FIRST LAST`, both included). Required.
	Start, End netip.Addr
	// Lease is the lease time (`lease 12h`). Parse sets dhcp.DefaultLeaseTime when absent.
	Lease time.Duration
	// Subnet is the device network (`subnet 198.18.3.0/24`): replies carry its mask, and
	// Validate checks that the range, hosts, router and listen address lie in it. Zero: the
	// prefix of the interface's address, read at start, where the same checks refuse to start.
	Subnet netip.Prefix
	// Router is sent to devices as their default gateway (`router ADDR`). Zero: no router
	// option; devices reach nothing but the box, which answers their DNS and proxies their
	// streams itself.
	Router netip.Addr
	// Domain is sent as the devices' domain name (`domain NAME`). Empty: none.
	Domain string
	// Hosts are reservations (`host NAME MAC ADDR`, repeatable): the device with that MAC
	// always gets ADDR and is named NAME in the audit trail. Empty: none.
	Hosts []DHCPHost
	// LeaseFile keeps leases across restarts (`leases FILE`). Parse sets
	// dhcp.DefaultLeaseFile when absent.
	LeaseFile string
	Origin    string // "FILE:LINE" of the dhcp directive
}

// DHCPHost is one `host` reservation.
type DHCPHost struct {
	Name   string
	MAC    dhcp.MAC
	Addr   netip.Addr
	Origin string // "FILE:LINE" of the host line
}

// maxDHCPRange bounds the pool: the server scans it for a free address on a DISCOVER.
const maxDHCPRange = 1 << 16

func (p *parser) dhcp(args []string) error {
	line := p.Line()
	if len(args) != 1 {
		return p.ArgErr("dhcp", "one interface name: dhcp IFACE { range FIRST LAST ... }")
	}
	iface := args[0]
	if len(iface) > 15 || strings.ContainsAny(iface, "/ \t") || iface == "." || iface == ".." {
		return p.Errf("dhcp: %q is not an interface name", iface)
	}
	if !p.hasBlock() {
		return p.Errf("dhcp %s needs a block on the same line: dhcp %s { range FIRST LAST ... }", iface, iface)
	}
	x := &DHCP{Interface: iface, Lease: dhcp.DefaultLeaseTime, LeaseFile: dhcp.DefaultLeaseFile, Origin: p.origin(line)}
	seen := map[string]int{}
	for p.NextBlock() {
		prop, pline := p.Val(), p.Line()
		args := p.RemainingArgs()
		if err := p.noBlock(prop); err != nil {
			return err
		}
		if prev, ok := seen[prop]; ok && prop != "host" {
			return p.Errf("%s given twice in dhcp %s (first at line %d)", prop, iface, prev)
		}
		seen[prop] = pline
		var err error
		switch prop {
		case "range":
			if len(args) != 2 {
				return p.ArgErr("range", "the first and last address of the pool: range FIRST LAST")
			}
			if x.Start, err = p.ipv4("range", args[0]); err != nil {
				return err
			}
			if x.End, err = p.ipv4("range", args[1]); err != nil {
				return err
			}
		case "lease":
			if x.Lease, err = p.timeout("lease", args); err != nil {
				return err
			}
			if x.Lease < time.Minute || x.Lease%time.Second != 0 || x.Lease > 365*24*time.Hour {
				return p.Errf("lease %s: want whole seconds from 1m to 8760h", args[0])
			}
		case "host":
			h, err := p.dhcpHost(args)
			if err != nil {
				return err
			}
			x.Hosts = append(x.Hosts, h)
		case "router":
			s, err := p.oneArg("router", "an IPv4 address", args)
			if err != nil {
				return err
			}
			if x.Router, err = p.ipv4("router", s); err != nil {
				return err
			}
		case "domain":
			s, err := p.oneArg("domain", "a domain name", args)
			if err != nil {
				return err
			}
			n, err := allowlist.ParseUnicodeName(s)
			if err != nil || strings.Contains(s, "*") {
				return p.Errf("domain: %q is not a domain name", s)
			}
			x.Domain = string(n)
		case "subnet":
			s, err := p.oneArg("subnet", "the device network, such as 198.18.3.0/24", args)
			if err != nil {
				return err
			}
			pf, err := netip.ParsePrefix(s)
			if err != nil || !pf.Addr().Is4() || pf.Bits() < 8 || pf.Bits() > 30 {
				return p.Errf("subnet: %q is not an IPv4 network from /8 to /30, such as 198.18.3.0/24", s)
			}
			if pf != pf.Masked() {
				return p.Errf("subnet %s has host bits set: write %s", s, pf.Masked())
			}
			x.Subnet = pf
		case "leases":
			if x.LeaseFile, err = p.oneArg("leases", "the path of the lease file", args); err != nil {
				return err
			}
		default:
			return p.Errf("unknown property %q in dhcp %s", prop, iface)
		}
	}
	if !x.Start.IsValid() {
		return p.errAt(line, "dhcp %s: range FIRST LAST is required", iface)
	}
	p.c.DHCP = x
	return nil
}

// ipv4 reads an IPv4 host address for a dhcp property.
func (p *parser) ipv4(prop, s string) (netip.Addr, error) {
	a, err := allowlist.ParseAddr(s)
	if err != nil {
		return a, p.Errf("%s: %v", prop, err)
	}
	if !a.Is4() || a.IsUnspecified() || a.IsMulticast() || a.IsLoopback() || a == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
		return netip.Addr{}, p.Errf("%s: %s is not an IPv4 host address (DHCP hands out IPv4 only)", prop, a)
	}
	return a, nil
}

func (p *parser) dhcpHost(args []string) (DHCPHost, error) {
	line := p.Line()
	if len(args) != 3 {
		return DHCPHost{}, p.ArgErr("host", "a name, a MAC address and an IPv4 address: host NAME MAC ADDR")
	}
	name := strings.ToLower(args[0])
	if dhcp.CleanHostName(name) != name {
		return DHCPHost{}, p.Errf("host: %q is not a host name (letters, digits, '-' and '_', up to 63)", args[0])
	}
	mac, err := dhcp.ParseMAC(args[1])
	if err != nil {
		return DHCPHost{}, p.Errf("host %s: %s", name, strings.TrimPrefix(err.Error(), "dhcp: "))
	}
	a, err := p.ipv4("host "+name, args[2])
	if err != nil {
		return DHCPHost{}, err
	}
	return DHCPHost{Name: name, MAC: mac, Addr: a, Origin: p.origin(line)}, nil
}

// dhcp checks the dhcp block against itself and the listen addresses.
func (v *validator) dhcp() {
	x := v.c.DHCP
	if x == nil {
		return
	}
	var listen4 netip.Addr
	for _, a := range v.c.Listen {
		if a.Is4() {
			listen4 = a
		}
	}
	if len(v.c.Listen) > 0 && !listen4.IsValid() {
		v.addAt(x.Origin, "dhcp %s: listen has no IPv4 address, and DHCP hands devices the box's IPv4 address as their DNS server", x.Interface)
	}
	if x.Start.Compare(x.End) > 0 {
		v.addAt(x.Origin, "dhcp %s: range %s %s ends before it starts", x.Interface, x.Start, x.End)
	} else if size := rangeSize(x.Start, x.End); size > maxDHCPRange {
		v.addAt(x.Origin, "dhcp %s: range %s %s holds %d addresses, more than %d", x.Interface, x.Start, x.End, size, maxDHCPRange)
	}
	if listen4.IsValid() && !listen4.IsUnspecified() && x.Start.Compare(listen4) <= 0 && listen4.Compare(x.End) <= 0 {
		v.addAt(x.Origin, "dhcp %s: range %s %s includes the box's own address %s", x.Interface, x.Start, x.End, listen4)
	}
	if x.Subnet.IsValid() {
		outside := func(what string, a netip.Addr, origin string) {
			if a.IsValid() && !x.Subnet.Contains(a) {
				v.addAt(origin, "dhcp %s: %s %s is outside subnet %s", x.Interface, what, a, x.Subnet)
			}
		}
		outside("range start", x.Start, x.Origin)
		outside("range end", x.End, x.Origin)
		outside("router", x.Router, x.Origin)
		if listen4.IsValid() && !listen4.IsUnspecified() {
			outside("listen address", listen4, x.Origin)
		}
		for _, h := range x.Hosts {
			outside("host "+h.Name+" address", h.Addr, h.Origin)
		}
	}
	names, macs, addrs := map[string]string{}, map[dhcp.MAC]string{}, map[netip.Addr]string{}
	for _, h := range x.Hosts {
		if prev, ok := names[h.Name]; ok {
			v.addAt(h.Origin, "dhcp %s: host %s given twice (first at %s)", x.Interface, h.Name, prev)
		}
		if prev, ok := macs[h.MAC]; ok {
			v.addAt(h.Origin, "dhcp %s: MAC %s of host %s is reserved already (at %s)", x.Interface, h.MAC, h.Name, prev)
		}
		if prev, ok := addrs[h.Addr]; ok {
			v.addAt(h.Origin, "dhcp %s: address %s of host %s is reserved already (at %s)", x.Interface, h.Addr, h.Name, prev)
		}
		if h.Addr == listen4 {
			v.addAt(h.Origin, "dhcp %s: host %s: %s is the box's own address", x.Interface, h.Name, h.Addr)
		}
		names[h.Name], macs[h.MAC], addrs[h.Addr] = h.Origin, h.Origin, h.Origin
	}
}

func rangeSize(a, b netip.Addr) uint64 {
	a4, b4 := a.As4(), b.As4()
	u := func(x [4]byte) uint64 { return uint64(x[0])<<24 | uint64(x[1])<<16 | uint64(x[2])<<8 | uint64(x[3]) }
	return u(b4) - u(a4) + 1
}

// dhcpSummary writes the dhcp block for `lnm check`; nothing when there is none.
func dhcpSummary(c *Config, s *summary) {
	x := c.DHCP
	if x == nil {
		return
	}
	subnet := "from the interface at start"
	if x.Subnet.IsValid() {
		subnet = x.Subnet.String()
	}
	router := "none"
	if x.Router.IsValid() {
		router = x.Router.String()
	}
	s.set("dhcp", fmt.Sprintf("%s range %s-%s lease %s subnet %s router %s  # %s", x.Interface, x.Start, x.End, duration(x.Lease), subnet, router, x.Origin))
	if x.Domain != "" {
		s.set("dhcp domain", x.Domain)
	}
	s.set("dhcp leases", x.LeaseFile)
	for _, h := range x.Hosts {
		s.set("dhcp host", fmt.Sprintf("%s %s %s  # %s", h.Name, h.MAC, h.Addr, h.Origin))
	}
}
