package udpsock

import (
	"net/netip"
	"testing"
	"unsafe"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

// cmsg builds one control message as the kernel lays it out, padded to the next word.
func cmsg(level, typ int32, data []byte) []byte {
	b := make([]byte, (unix.CmsgSpace(len(data))))
	h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
	h.Level, h.Type = level, typ
	h.SetLen(unix.CmsgLen(len(data)))
	copy(b[unix.CmsgLen(0):], data)
	return b
}

// TestDestination reads the destination from the control messages as x/net's parsers do.
func TestDestination(t *testing.T) {
	pkt4 := make([]byte, unix.SizeofInet4Pktinfo)
	copy(pkt4[4:], []byte{127, 0, 0, 9}) // spec_dst: not the destination
	copy(pkt4[8:], []byte{127, 0, 0, 2})
	pkt6 := make([]byte, unix.SizeofInet6Pktinfo)
	copy(pkt6, netip.MustParseAddr("2001:db8::53").AsSlice())
	mapped := make([]byte, unix.SizeofInet6Pktinfo)
	copy(mapped, netip.MustParseAddr("::ffff:192.0.2.1").AsSlice())
	other := cmsg(unix.SOL_SOCKET, unix.SO_TIMESTAMP, make([]byte, 16))
	cases := []struct {
		name string
		oob  []byte
		want string
	}{
		{"none", nil, "invalid IP"},
		{"IPv4", cmsg(unix.IPPROTO_IP, unix.IP_PKTINFO, pkt4), "127.0.0.2"},
		{"IPv6", cmsg(unix.IPPROTO_IPV6, unix.IPV6_PKTINFO, pkt6), "2001:db8::53"},
		{"IPv4-mapped", cmsg(unix.IPPROTO_IPV6, unix.IPV6_PKTINFO, mapped), "192.0.2.1"},
		{"after another message", append(other, cmsg(unix.IPPROTO_IP, unix.IP_PKTINFO, pkt4)...), "127.0.0.2"},
		{"IPv6 wins", append(cmsg(unix.IPPROTO_IP, unix.IP_PKTINFO, pkt4), cmsg(unix.IPPROTO_IPV6, unix.IPV6_PKTINFO, pkt6)...), "2001:db8::53"},
		{"cut short", cmsg(unix.IPPROTO_IP, unix.IP_PKTINFO, pkt4)[:unix.CmsgLen(4)], "invalid IP"},
	}
	for _, c := range cases {
		if got := Destination(c.oob).String(); got != c.want {
			t.Errorf("%s: %s, want %s", c.name, got, c.want)
		}
		var cm4 ipv4.ControlMessage
		if c.name == "IPv4" && (cm4.Parse(c.oob) != nil || cm4.Dst.String() != c.want) {
			t.Errorf("x/net reads %v", cm4.Dst)
		}
	}
	if n := testing.AllocsPerRun(100, func() { Destination(cases[1].oob) }); n != 0 {
		t.Errorf("%v allocations", n)
	}
}
