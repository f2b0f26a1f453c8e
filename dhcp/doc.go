// Package dhcp is lnm's optional DHCPv4 server for the device network: it hands every device
// the box's own address as its DNS server, and so learns which device (MAC address and host
// name) holds which address, which the audit trail writes on the device's records.
//
// The protocol lives in a pure decision core (Decide: request, pool, now → reply and lease
// changes, RFC 2131 section 4.3) apart from the socket (Server), in the shape of the
// forwarder's Decide, so that every case is a table test and a fuzz target reaches it
// without a network. Packets are parsed and built with github.com/insomniacslk/dhcp's
// dhcpv4, and read and written on the interface with its server4 socket (SO_BINDTODEVICE,
// SO_BROADCAST): a maintained library used by coredhcp and u-root, rather than another
// hand-written BOOTP codec.
//
// Leases are durable: every change is written atomically to the lease file (temp file,
// fsync, rename, fsync of the directory) before the reply that promises it goes out, and
// the file is read back at start.
package dhcp
