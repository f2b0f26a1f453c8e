package main

import (
	"fmt"
	"os"
	"path/filepath"
)

// dnsServer is one DNS contender: where it listens and how to start it. Each answers every
// name at or below bench.test with one A record and refuses or NXDOMAINs the rest.
type dnsServer struct {
	name  string
	addr  string // IP, loopback only
	port  int
	start func(dir string) (*daemon, error)
}

func (s dnsServer) hostPort() string { return fmt.Sprintf("%s:%d", s.addr, s.port) }

// dnsServers lists the contenders; unbound first, the reference every ratio is against.
// CoreDNS is left out when it could not be built (coreDNS empty).
func dnsServers(t *tools) []dnsServer {
	out := []dnsServer{
		{name: "unbound", addr: "127.0.0.11", port: 5301, start: startUnbound},
		{name: "dnsmasq", addr: "127.0.0.12", port: 5302, start: startDnsmasq},
	}
	if t.coreDNS != "" {
		out = append(out, dnsServer{name: "CoreDNS", addr: "127.0.0.13", port: 5303, start: func(dir string) (*daemon, error) {
			return startCoreDNS(t.coreDNS, dir)
		}})
	}
	return append(out, dnsServer{name: "lnm", addr: "127.0.0.14", port: 5304, start: func(dir string) (*daemon, error) {
		return startLnmDNS(t.lnm, dir)
	}})
}

// startUnbound runs unbound in the foreground with two threads (one per core, as the
// machine has) and SO_REUSEPORT: a redirect zone answers bench.test and everything below it
// with one address, and "." refuse answers everything else.
func startUnbound(dir string) (*daemon, error) {
	conf := fmt.Sprintf(`server:
    interface: 127.0.0.11
    port: 5301
    do-ip6: no
    num-threads: 2
    so-reuseport: yes
    username: ""
    chroot: ""
    directory: %q
    pidfile: %q
    do-daemonize: no
    use-syslog: no
    verbosity: 0
    module-config: "iterator"
    access-control: 127.0.0.0/8 allow
    local-zone: "." refuse
    local-zone: "bench.test." redirect
    local-data: "bench.test. 60 IN A 127.0.0.11"
remote-control:
    control-enable: no
`, dir, filepath.Join(dir, "unbound.pid"))
	path := filepath.Join(dir, "unbound.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		return nil, fmt.Errorf("bench: unbound config: %w", err)
	}
	return startDaemon(dir, "unbound", "unbound", "-d", "-c", path)
}

// startDnsmasq runs dnsmasq with no upstream and no hosts file: address=/bench.test/ answers
// the zone, and with no server to forward to every other name is refused.
func startDnsmasq(dir string) (*daemon, error) {
	return startDaemon(dir, "dnsmasq", "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null",
		"--no-resolv", "--no-hosts", "--bind-interfaces", "--listen-address=127.0.0.12", "--port=5302",
		"--address=/bench.test/127.0.0.12", "--pid-file=")
}

// startCoreDNS serves only the bench.test zone with the template plugin; CoreDNS refuses
// names outside every zone it serves.
func startCoreDNS(bin, dir string) (*daemon, error) {
	conf := `bench.test:5303 {
    bind 127.0.0.13
    template IN A {
        answer "{{ .Name }} 60 IN A 127.0.0.13"
    }
}
`
	path := filepath.Join(dir, "Corefile")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		return nil, fmt.Errorf("bench: Corefile: %w", err)
	}
	return startDaemon(dir, "coredns", bin, "-conf", path, "-quiet")
}

// startLnmDNS runs lnm with its defaults and auditing on (the log on disk and the store in
// memory). Only the per-client rate limit is off: every query comes from one address.
func startLnmDNS(bin, dir string) (*daemon, error) {
	conf := fmt.Sprintf(`lnm {
    listen          127.0.0.14
    dns             5304
    admin           %s
    audit           %s
    dns_rate_limit  off     # the load comes from one address
    allow {
        .bench.test
    }
}
`, filepath.Join(dir, "admin.sock"), filepath.Join(dir, "audit"))
	path := filepath.Join(dir, "lnm-dns.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		return nil, fmt.Errorf("bench: lnm config: %w", err)
	}
	return startDaemon(dir, "lnm", bin, "run", "--config", path)
}
