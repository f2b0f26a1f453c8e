package main

import (
	"fmt"
	"os"
	"path/filepath"
)

// backendAddr is the TLS origin; every proxy sends *.bench.test there.
const backendAddr = "127.0.0.20:8443"

// proxy is one proxy contender. direct has no process: the client connects to the backend,
// which is the limit every ratio is against.
type proxy struct {
	name  string
	addr  string // where the load generator connects
	start func(dir string) (*daemon, error)
}

// proxies lists the contenders, direct first.
func proxies(t *tools) []proxy {
	return []proxy{
		{name: "direct", addr: backendAddr},
		{name: "lnm", addr: "127.0.0.21:8443", start: func(dir string) (*daemon, error) { return startLnmProxy(t.lnm, dir) }},
		{name: "HAProxy", addr: "127.0.0.22:8443", start: startHAProxy},
		{name: "nginx", addr: "127.0.0.23:8443", start: startNginx},
		{name: "sniproxy", addr: "127.0.0.24:8443", start: startSniproxy},
	}
}

func writeConf(dir, name, text string) (string, error) {
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		return "", fmt.Errorf("bench: %s: %w", name, err)
	}
	return path, nil
}

// startLnmProxy runs lnm with its defaults and auditing on. The rule sends *.bench.test to
// the backend with `to`, so lnm does what every peer here does (read the SNI, match it,
// dial a fixed address) and no DNS lookup sits in its path that the peers do not have; at
// the top level lnm would also refuse a name resolving to loopback, rightly.
func startLnmProxy(bin, dir string) (*daemon, error) {
	path, err := writeConf(dir, "lnm-proxy.conf", fmt.Sprintf(`lnm {
    listen  127.0.0.21
    dns     off
    proxy   8443
    admin   %s
    audit   %s
    max_conns_per_source off   # the load comes from one address
    conn_rate_limit      off   # likewise
    allow {
        *.bench.test to %s
    }
}
`, filepath.Join(dir, "admin.sock"), filepath.Join(dir, "audit"), backendAddr))
	if err != nil {
		return nil, err
	}
	return startDaemon(dir, "lnm", bin, "run", "--config", path)
}

// startHAProxy runs HAProxy in TCP mode routing by req.ssl_sni. maxconn is set so that
// 9,500 connections fit in the 20,000 open files (two each); HAProxy's threads default to
// one per core.
func startHAProxy(dir string) (*daemon, error) {
	path, err := writeConf(dir, "haproxy.cfg", fmt.Sprintf(`global
    maxconn 9900
defaults
    mode tcp
    maxconn 9900
    timeout connect 5s
    timeout client 1h
    timeout server 1h
frontend tls
    bind 127.0.0.22:8443
    tcp-request inspect-delay 10s
    tcp-request content accept if { req.ssl_hello_type 1 }
    use_backend app if { req.ssl_sni -m end .bench.test }
backend app
    server app %s
`, backendAddr))
	if err != nil {
		return nil, err
	}
	return startDaemon(dir, "haproxy", "haproxy", "-db", "-f", path)
}

// startNginx runs nginx's stream module with ssl_preread, one worker per core; names not in
// the map go to a closed port, so the connection is refused.
func startNginx(dir string) (*daemon, error) {
	path, err := writeConf(dir, "nginx.conf", fmt.Sprintf(`load_module /usr/lib/nginx/modules/ngx_stream_module.so;
daemon off;
worker_processes auto;
worker_rlimit_nofile 20000;
pid %s;
error_log %s warn;
events {
    worker_connections 20000;
}
stream {
    upstream app  { server %s; }
    upstream deny { server 127.0.0.1:9; }
    map $ssl_preread_server_name $route {
        ~\.bench\.test$  app;
        default          deny;
    }
    server {
        listen 127.0.0.23:8443;
        ssl_preread on;
        proxy_pass $route;
        proxy_timeout 1h;
    }
}
`, filepath.Join(dir, "nginx.pid"), filepath.Join(dir, "nginx-error.log"), backendAddr))
	if err != nil {
		return nil, err
	}
	return startDaemon(dir, "nginx", "nginx", "-c", path, "-p", dir, "-e", filepath.Join(dir, "nginx-error.log"))
}

// startSniproxy runs sniproxy in the foreground with one table entry for the zone.
func startSniproxy(dir string) (*daemon, error) {
	path, err := writeConf(dir, "sniproxy.conf", fmt.Sprintf(`user root
pidfile %s
error_log {
    filename %s
    priority notice
}
listener 127.0.0.24:8443 {
    protocol tls
    table bench
}
table bench {
    ^.*\.bench\.test$ %s
}
`, filepath.Join(dir, "sniproxy.pid"), filepath.Join(dir, "sniproxy-error.log"), backendAddr))
	if err != nil {
		return nil, err
	}
	return startDaemon(dir, "sniproxy", "sniproxy", "-f", "-c", path)
}
