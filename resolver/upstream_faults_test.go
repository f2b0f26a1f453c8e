package resolver

import (
	"context"
	"net/netip"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// TestCase16UpstreamServfail: an upstream resolver that answers SERVFAIL (the faults
// catalog's case 16) is passed over for the next server, and alone it fails the lookup with
// an error that names it, so the forwarder records resolve_failed.
func TestCase16UpstreamServfail(t *testing.T) {
	failing := startPlantDNS(t, func(w dns.ResponseWriter, req *dns.Msg, _ bool) {
		m := new(dns.Msg)
		w.WriteMsg(m.SetRcode(req, dns.RcodeServerFailure))
	})
	up := startPlantDNS(t, rrs(t, "api.example.com. 60 IN A 198.18.0.10").serve(true, 0))
	u := NewUpstream(UpstreamConfig{Servers: []netip.AddrPort{failing.addr, up.addr}})
	if got, err := u.Lookup(context.Background(), "api.example.com"); err != nil || len(got) != 1 || got[0] != netip.MustParseAddr("198.18.0.10") {
		t.Errorf("Lookup past a SERVFAIL server = %v, %v", got, err)
	}
	alone := NewUpstream(UpstreamConfig{Servers: []netip.AddrPort{failing.addr}})
	_, err := alone.Lookup(context.Background(), "api.example.com")
	if err == nil || !strings.Contains(err.Error(), "SERVFAIL") || !strings.Contains(err.Error(), failing.addr.String()) {
		t.Errorf("SERVFAIL alone: %v, want an error naming SERVFAIL and the server", err)
	}
}
