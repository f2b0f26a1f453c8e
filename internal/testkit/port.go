package testkit

import (
	"net"
	"testing"
)

// FreePort is a port on 127.0.0.1 that is free for both TCP and UDP now, for a component
// that binds its ports itself (a DNS server binds both). Another process may take it before
// the test binds it; the tests that use it bind within milliseconds and fail loudly if not.
func FreePort(t testing.TB) uint16 {
	t.Helper()
	for range 20 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
		ln.Close()
		if err != nil {
			continue // taken for UDP: try another
		}
		udp.Close()
		return uint16(port)
	}
	t.Fatal("testkit: no loopback port free for both TCP and UDP in 20 tries")
	return 0
}
