package main

import "testing"

// TestPprofAddr: profiles are served on loopback only.
func TestPprofAddr(t *testing.T) {
	for _, ok := range []string{"127.0.0.1:6060", "[::1]:6060", "127.0.0.5:0"} {
		if _, err := pprofAddr(ok); err != nil {
			t.Errorf("pprofAddr(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"0.0.0.0:6060", "198.18.0.1:6060", "[::]:6060", "localhost:6060", "127.0.0.1", ""} {
		if _, err := pprofAddr(bad); err == nil {
			t.Errorf("pprofAddr(%q) accepted", bad)
		}
	}
}
