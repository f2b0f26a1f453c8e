package forwarder

import (
	"net/netip"
	"testing"
)

// TestClassify: every class of address the box refuses to dial for a device's name, in IPv4,
// IPv6 and IPv4-mapped IPv6 form, and the public addresses it dials.
func TestClassify(t *testing.T) {
	self := []netip.Addr{netip.MustParseAddr("198.18.4.1"), netip.MustParseAddr("2001:db8:4::1")}
	for _, tc := range []struct {
		addr string
		want AddrClass
	}{
		{"8.8.8.8", AddrPublic},
		{"2606:4700::1111", AddrPublic},
		{"::ffff:8.8.8.8", AddrPublic},
		{"198.18.5.10", AddrPublic}, // the benchmark range is the lab's internet
		{"0.0.0.0", AddrUnspecified},
		{"::", AddrUnspecified},
		{"0.1.2.3", AddrThisNetwork},
		{"127.0.0.1", AddrLoopback},
		{"127.255.0.9", AddrLoopback},
		{"::1", AddrLoopback},
		{"::ffff:127.0.0.1", AddrLoopback},
		{"169.254.169.254", AddrLinkLocal}, // cloud metadata
		{"fe80::1", AddrLinkLocal},
		{"::ffff:169.254.1.1", AddrLinkLocal},
		{"10.1.2.3", AddrPrivate},
		{"172.16.0.1", AddrPrivate},
		{"172.31.255.255", AddrPrivate},
		{"192.168.30.2", AddrPrivate},
		{"::ffff:10.0.0.1", AddrPrivate},
		{"fd00::1", AddrULA},
		{"fc12::1", AddrULA},
		{"100.64.0.1", AddrCGNAT},
		{"100.127.255.254", AddrCGNAT},
		{"::ffff:100.64.0.1", AddrCGNAT},
		{"224.0.0.251", AddrMulticast},
		{"ff02::1", AddrMulticast},
		{"255.255.255.255", AddrBroadcast},
		{"198.18.4.1", AddrSelf},
		{"::ffff:198.18.4.1", AddrSelf},
		{"2001:db8:4::1", AddrSelf},
	} {
		t.Run(tc.addr, func(t *testing.T) {
			if got := classify(netip.MustParseAddr(tc.addr), self); got != tc.want {
				t.Errorf("classify(%s) = %q, want %q", tc.addr, got, tc.want)
			}
		})
	}
	if got := classify(netip.Addr{}, self); got != AddrInvalid {
		t.Errorf("classify(zero) = %q, want %q", got, AddrInvalid)
	}
}
