// Package udpsock opens the UDP sockets of a server that answers from the address each
// datagram was sent to: on a wildcard or multi-homed socket that is the address A and AAAA
// answers carry, and the one a client expects replies from. Listen opens one socket per read
// loop sharing the port (SO_REUSEPORT); Destination reads a datagram's local address from its
// control messages without allocating; Conn.WriteTo and SourceOOB send from it.
package udpsock

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"unsafe"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

// Listen opens n UDP sockets on addr sharing the port (SO_REUSEPORT when n > 1). A plain
// socket is bound and closed first, so that a port another program holds is still an error
// (SO_REUSEPORT alone would let two servers of the same user share it).
func Listen(network string, addr netip.AddrPort, n int) ([]*Conn, error) {
	if n <= 1 {
		c, err := ListenOne(network, addr, false)
		if err != nil {
			return nil, err
		}
		return []*Conn{c}, nil
	}
	probe, err := ListenOne(network, addr, false)
	if err != nil {
		return nil, err
	}
	probe.Close()
	var conns []*Conn
	for range n {
		c, err := ListenOne(network, addr, true)
		if err != nil {
			for _, c := range conns {
				c.Close()
			}
			return nil, err
		}
		conns = append(conns, c)
	}
	return conns, nil
}

func reusePort(_, _ string, rc syscall.RawConn) error {
	var serr error
	err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
	})
	return errors.Join(err, serr)
}

// listenUDP opens one UDP socket and asks the kernel for each datagram's destination address.
func ListenOne(network string, addr netip.AddrPort, reuse bool) (*Conn, error) {
	lc := net.ListenConfig{}
	if reuse {
		lc.Control = reusePort
	}
	pc, err := lc.ListenPacket(context.Background(), network, addr.String())
	if err != nil {
		return nil, err
	}
	c := pc.(*net.UDPConn)
	err4 := ipv4.NewPacketConn(c).SetControlMessage(ipv4.FlagDst, true)
	err6 := ipv6.NewPacketConn(c).SetControlMessage(ipv6.FlagDst, true)
	if err4 != nil && err6 != nil {
		c.Close()
		return nil, fmt.Errorf("ask for destination addresses: %w", err4)
	}
	return &Conn{c}, nil
}

// Conn is a server's UDP socket, opened by Listen.
type Conn struct {
	*net.UDPConn
}

// Peer is the remote end of one datagram, with the local address it was sent to.
type Peer struct {
	Remote *net.UDPAddr
	Local  netip.Addr // invalid when the kernel gave no destination
}

func (p *Peer) Network() string { return "udp" }
func (p *Peer) String() string  { return p.Remote.String() }

// OOBSize fits the destination control message of either family.
var OOBSize = max(len(ipv4.NewControlMessage(ipv4.FlagDst)), len(ipv6.NewControlMessage(ipv6.FlagDst)))

// WriteTo sends a reply, from the address the query was sent to when it is known.
func (c *Conn) WriteTo(b []byte, addr net.Addr) (int, error) {
	p, ok := addr.(*Peer)
	if !ok {
		return c.UDPConn.WriteTo(b, addr)
	}
	n, _, err := c.WriteMsgUDP(b, SourceOOB(p.Local), p.Remote)
	return n, err
}

// SourceOOB is the control message that sends a datagram from local (nil: the kernel picks).
func SourceOOB(local netip.Addr) []byte {
	switch {
	case !local.IsValid():
		return nil
	case local.Is4() || local.Is4In6():
		return (&ipv4.ControlMessage{Src: local.Unmap().AsSlice()}).Marshal()
	default:
		return (&ipv6.ControlMessage{Src: local.AsSlice()}).Marshal()
	}
}

// Destination parses the datagram's destination address from its control messages: the
// IPV6_PKTINFO or IP_PKTINFO that Listen asks for. It reads them in place, allocating
// nothing (the read loops call it for every datagram).
func Destination(oob []byte) netip.Addr {
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
