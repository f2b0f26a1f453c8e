package resolver

import (
	"unsafe"

	"net"
	"net/netip"

	"golang.org/x/sys/unix"

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

// destination parses the datagram's destination address from its control messages: the
// IPV6_PKTINFO or IP_PKTINFO that listenUDP asks for. It reads them in place, allocating
// nothing (the read loops call it for every datagram).
func destination(oob []byte) netip.Addr {
	var v4 netip.Addr
	for len(oob) >= unix.SizeofCmsghdr {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
		n := int(h.Len)
		if n < unix.SizeofCmsghdr || n > len(oob) {
			break
		}
		data := oob[unix.SizeofCmsghdr:n]
		switch {
		case h.Level == unix.IPPROTO_IPV6 && h.Type == unix.IPV6_PKTINFO && len(data) >= unix.SizeofInet6Pktinfo:
			return netip.AddrFrom16([16]byte(data[:16])).Unmap()
		case h.Level == unix.IPPROTO_IP && h.Type == unix.IP_PKTINFO && len(data) >= unix.SizeofInet4Pktinfo:
			v4 = netip.AddrFrom4([4]byte(data[8:12])) // ipi_addr, after ipi_ifindex and ipi_spec_dst
		}
		next := (n + cmsgAlign - 1) &^ (cmsgAlign - 1)
		if next >= len(oob) {
			break
		}
		oob = oob[next:]
	}
	return v4
}

// cmsgAlign is CMSG_ALIGN's unit: control messages start at multiples of a word.
const cmsgAlign = int(unsafe.Sizeof(uintptr(0)))
