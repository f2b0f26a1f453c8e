package resolver

import (
	"net"
	"net/netip"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// miekg/dns keeps the destination address of each UDP datagram in its SessionUDP, but does
// not expose it. The server needs it: on a wildcard socket it is the address A and AAAA
// answers carry. So the server's socket is wrapped in udpConn, which the read loops (udploop.go)
// read with its control messages, and every datagram's peer is a udpPeer that carries both
// ends. Replies leave from the address the query came to, as a multi-homed client expects.

// udpConn is the server's UDP socket.
type udpConn struct {
	*net.UDPConn
}

// udpPeer is the remote end of one datagram, with the local address it was sent to.
type udpPeer struct {
	remote *net.UDPAddr
	local  netip.Addr // invalid when the kernel gave no destination
}

func (p *udpPeer) Network() string { return "udp" }
func (p *udpPeer) String() string  { return p.remote.String() }

// oobSize fits the destination control message of either family.
var oobSize = max(len(ipv4.NewControlMessage(ipv4.FlagDst)), len(ipv6.NewControlMessage(ipv6.FlagDst)))

// WriteTo sends a reply, from the address the query was sent to when it is known.
func (c *udpConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	p, ok := addr.(*udpPeer)
	if !ok {
		return c.UDPConn.WriteTo(b, addr)
	}
	n, _, err := c.WriteMsgUDP(b, sourceOOB(p.local), p.remote)
	return n, err
}

func sourceOOB(local netip.Addr) []byte {
	switch {
	case !local.IsValid():
		return nil
	case local.Is4() || local.Is4In6():
		return (&ipv4.ControlMessage{Src: local.Unmap().AsSlice()}).Marshal()
	default:
		return (&ipv6.ControlMessage{Src: local.AsSlice()}).Marshal()
	}
}

// destination parses the datagram's destination address from its control message.
func destination(oob []byte) netip.Addr {
	var cm6 ipv6.ControlMessage
	if cm6.Parse(oob) == nil && cm6.Dst != nil {
		a, _ := netip.AddrFromSlice(cm6.Dst)
		return a.Unmap()
	}
	var cm4 ipv4.ControlMessage
	if cm4.Parse(oob) == nil && cm4.Dst != nil {
		a, _ := netip.AddrFromSlice(cm4.Dst)
		return a.Unmap()
	}
	return netip.Addr{}
}
