package resolver

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// reconfigure prepares cfg and commits it, as a box with this one component would.
func reconfigure(s *Server, cfg Config) error {
	p, err := s.Prepare(cfg)
	if err != nil {
		return err
	}
	p.Commit()
	return nil
}

// A prepared config changes no answer until it is committed, and one never committed none.
func TestPrepareAnswersOnlyAfterCommit(t *testing.T) {
	s := startServer(t, Config{})
	cfg := s.cfg
	cfg.List = mustList(t, "other.example.com")
	p, err := s.Prepare(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if resp := ask(t, "udp", s.Addr(), newReq("api.example.com.", dns.TypeA)); resp.Rcode != dns.RcodeSuccess || len(resp.Answer) != 1 {
		t.Fatalf("before Commit: rcode %s, %d answers; want the old list's answer", dns.RcodeToString[resp.Rcode], len(resp.Answer))
	}
	p.Commit()
	if resp := ask(t, "udp", s.Addr(), newReq("api.example.com.", dns.TypeA)); resp.Rcode != dns.RcodeNameError {
		t.Errorf("after Commit: rcode %s, want NXDOMAIN", dns.RcodeToString[resp.Rcode])
	}
}

// Prepare refuses what a running server cannot take, and says why; the server keeps
// answering with its old config.
func TestPrepareRefuses(t *testing.T) {
	s := startServer(t, Config{RateLimit: 100})
	self := s.Addr()
	zone := func(servers ...netip.AddrPort) []Zone {
		return []Zone{{Name: "plant.test", Servers: servers}}
	}
	for _, tc := range []struct {
		name   string
		change func(*Config)
		want   string
	}{
		{"listen address", func(c *Config) { c.Addr = netip.MustParseAddrPort("127.0.0.1:1") }, "listen address 127.0.0.1:0 cannot change"},
		{"rate limit", func(c *Config) { c.RateLimit = 5 }, "rate limit 100 cannot change to 5"},
		{"tcp limit", func(c *Config) { c.MaxTCPConns = 3 }, "TCP connection limit 150 cannot change to 3"},
		{"ttl", func(c *Config) { c.TTL = 500 * time.Millisecond }, "TTL 500ms is not between"},
		{"zone without servers", func(c *Config) { c.Zones = zone() }, `stub zone "plant.test" needs a name`},
		{"zone forwarding to itself", func(c *Config) { c.Zones = zone(netip.MustParseAddrPort("192.0.2.53:53"), self) },
			"stub zone plant.test forwards to " + self.String() + ", which is this server itself"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := s.cfg
			cfg.List = mustList(t, "other.example.com")
			tc.change(&cfg)
			p, err := s.Prepare(cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Prepare: %v, %v; want an error containing %q", p, err, tc.want)
			}
			if resp := ask(t, "tcp", self, newReq("api.example.com.", dns.TypeA)); resp.Rcode != dns.RcodeSuccess || len(resp.Answer) != 1 {
				t.Errorf("after a refused config: rcode %s, %d answers; want the old list's answer", dns.RcodeToString[resp.Rcode], len(resp.Answer))
			}
		})
	}
}
