package resolver

import (
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// miekg/dns keeps the destination address of each UDP datagram in its SessionUDP, but does
// not expose it. The server needs it: on a wildcard socket it is the address A and AAAA
// answers carry. So the server's socket is wrapped in udpConn, which miekg serves as a generic
// net.PacketConn through udpReader, and every datagram's peer is a udpPeer that carries both
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

// listenUDP opens the server's UDP socket and asks the kernel for each datagram's
// destination address.
func listenUDP(network string, addr netip.AddrPort) (*udpConn, error) {
	c, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(addr))
	if err != nil {
		return nil, err
	}
	err4 := ipv4.NewPacketConn(c).SetControlMessage(ipv4.FlagDst, true)
	err6 := ipv6.NewPacketConn(c).SetControlMessage(ipv6.FlagDst, true)
	if err4 != nil && err6 != nil {
		c.Close()
		return nil, err4
	}
	return &udpConn{c}, nil
}

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

// udpReader reads datagrams with their destination address. It reads from the one serving
// goroutine, so it keeps one buffer and hands each handler an exact-size copy.
type udpReader struct {
	dns.Reader
	buf   []byte
	oob   []byte
	reads *atomic.Uint64 // counts datagrams taken, for Server.Progress
}

func newUDPReader(r dns.Reader, reads *atomic.Uint64) dns.Reader {
	return &udpReader{Reader: r, buf: make([]byte, dns.MaxMsgSize), oob: make([]byte, oobSize), reads: reads}
}

// ReadPacketConn sets no read deadline: the server's shutdown sets one in the past to stop
// the loop, and a deadline set here could override it and stall Close.
func (r *udpReader) ReadPacketConn(conn net.PacketConn, _ time.Duration) ([]byte, net.Addr, error) {
	c := conn.(*udpConn)
	n, oobn, _, remote, err := c.ReadMsgUDP(r.buf, r.oob)
	r.reads.Add(1)
	if err != nil {
		return nil, nil, err
	}
	return append([]byte(nil), r.buf[:n]...), &udpPeer{remote: remote, local: destination(r.oob[:oobn])}, nil
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
