package main

// The lab: one Linux network namespace per host, joined by veth links, addressed from the
// RFC 2544 benchmark range 198.18.0.0/15.
//
//	dev  198.18.3.20, .21 ──▶ l3 198.18.3.1 | 198.18.4.3 ──▶ l4 198.18.4.1 | 198.18.5.1 ──▶ inet 198.18.5.53, .10–.14
//
// Neither box forwards IP packets, so the device can reach the "internet" only through the
// boxes' own sockets. The internet runs a DNS server for the .test names and TLS servers on
// 443 and 8883, inside its namespace, in a copy of this test binary (TestLabHelper).
//
// Network safety: every packet a lab test sends goes from a process inside one of the lab's
// namespaces (ip netns exec) to an address inside another; nothing is sent from the root
// namespace. Everything made here is removed by name or PID in t.Cleanup.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/lnm-project/lnm/internal/testkit"
)

// Addresses of the lab. They are fixed: the example configs name them.
const (
	devAddr    = "198.18.3.20"
	devAddr2   = "198.18.3.21"
	l3DownAddr = "198.18.3.1"
	l3UpAddr   = "198.18.4.3"
	l4DownAddr = "198.18.4.1"
	l4UpAddr   = "198.18.5.1"
	inetDNS    = "198.18.5.53"
)

// inetNames are the internet's names, each with its own address and certificate. Names
// that are never allowed get a server too, so a box that wrongly let them through would
// succeed visibly.
var inetNames = []struct{ name, addr string }{
	{"www.contoso.test", "198.18.5.10"},
	{"contoso.test", "198.18.5.10"},
	{"api.azure.test", "198.18.5.11"},
	{"mqtt.vendor.test", "198.18.5.12"},
	{"opcua.vendor.test", "198.18.5.13"},
	{"blocked.evil.test", "198.18.5.14"},
}

// helperEnv selects the helper mode of the test binary; helperDirEnv names the lab directory.
const (
	helperEnv    = "LNM_LAB_HELPER"
	helperDirEnv = "LNM_LAB_DIR"
)

// labTools are the programs the lab needs, with the Debian package that has each.
var labTools = map[string]string{
	"ip":            "iproute2",
	"ss":            "iproute2",
	"dig":           "bind9-dnsutils",
	"curl":          "curl",
	"wget":          "wget", // https_proxy use of the connect port
	"openssl":       "openssl",
	"mosquitto_pub": "mosquitto-clients",
	"busybox":       "busybox", // nc, for a plain TCP route
}

var labSeq atomic.Int32

type lab struct {
	t      *testing.T
	prefix string // lnm-<pid>-<seq>
	dir    string // certificates, configs, logs
	caFile string

	mu   sync.Mutex
	logs []string // files dumped when the test fails
}

// ns returns the full name of the lab namespace for host ("dev", "l3", "l4", "inet").
func (l *lab) ns(host string) string { return l.prefix + "-" + host }

// requireLab skips when the lab cannot run here, loudly, and fails when it should run but a
// tool is missing.
func requireLab(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("lab test skipped with -short: it builds network namespaces and runs real clients")
	}
	if runtime := os.Geteuid(); runtime != 0 {
		t.Skip("needs root for network namespaces: run `go test ./cmd/lnm/` as root (CI does, see .ci/run); skipping the end-to-end lab")
	}
	var missing []string
	for tool, pkg := range labTools {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, fmt.Sprintf("%s (apt-get install %s)", tool, pkg))
		}
	}
	if len(missing) > 0 {
		t.Fatalf("lab tools missing: %s; .ci/run installs them", strings.Join(missing, ", "))
	}
}

// newLab builds the four namespaces, their links and addresses, and the test CA and
// certificates. It does not start any service.
func newLab(t *testing.T) *lab {
	t.Helper()
	requireLab(t)
	sweepStaleLabs(t)
	l := &lab{
		t:      t,
		prefix: fmt.Sprintf("lnm-%d-%d", os.Getpid(), labSeq.Add(1)),
		dir:    t.TempDir(),
	}
	hosts := []string{"dev", "l3", "l4", "inet"}
	for _, h := range hosts {
		ns := l.ns(h)
		if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
			t.Fatalf("cannot make network namespace %s: %v: %s", ns, err, out)
		}
		t.Cleanup(func() { l.removeNamespace(ns) })
		l.ip(h, "link", "set", "lo", "up")
	}

	// Links are created straight inside their namespaces: nothing appears in the root one.
	l.veth("dev", "to-l3", "l3", "to-dev")
	l.veth("l3", "to-l4", "l4", "to-l3")
	l.veth("l4", "to-inet", "inet", "to-l4")

	l.addr("dev", "to-l3", devAddr+"/24", devAddr2+"/24")
	l.addr("l3", "to-dev", l3DownAddr+"/24")
	l.addr("l3", "to-l4", l3UpAddr+"/24")
	l.addr("l4", "to-l3", l4DownAddr+"/24")
	l.addr("l4", "to-inet", l4UpAddr+"/24")
	inetAddrs := []string{inetDNS + "/24"}
	seen := map[string]bool{}
	for _, n := range inetNames {
		if !seen[n.addr] {
			seen[n.addr] = true
			inetAddrs = append(inetAddrs, n.addr+"/24")
		}
	}
	l.addr("inet", "to-l4", inetAddrs...)
	// The device's only way out is the level-3 box. No other host needs a route: every
	// peer a box or the internet answers is on a connected subnet.
	l.ip("dev", "route", "add", "default", "via", l3DownAddr)

	// Each host's resolver, bind-mounted over /etc/resolv.conf by `ip netns exec`.
	l.resolvConf("dev", l3DownAddr)
	l.resolvConf("l3", l4DownAddr)
	l.resolvConf("l4", inetDNS)
	l.resolvConf("inet", inetDNS)

	// The boxes must not route: isolation rests on it.
	for _, h := range []string{"l3", "l4"} {
		out := strings.TrimSpace(l.mustRun(h, "cat", "/proc/sys/net/ipv4/ip_forward"))
		if out != "0" {
			t.Fatalf("namespace %s has net.ipv4.ip_forward=%s, want 0", l.ns(h), out)
		}
	}
	l.writeCerts()
	return l
}

// sweepStaleLabs removes namespaces left by an earlier run of these tests that was killed
// before its cleanup ran: only names this file makes, and only when their process is gone.
func sweepStaleLabs(t *testing.T) {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return
	}
	re := regexp.MustCompile(`^lnm-(\d+)-\d+-(dev|l3|l4|inet)$`)
	for line := range strings.Lines(string(out)) {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		m := re.FindStringSubmatch(f[0])
		if m == nil {
			continue
		}
		pid, _ := strconv.Atoi(m[1])
		if pid == os.Getpid() {
			continue
		}
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
			continue
		}
		t.Logf("removing stale lab namespace %s (process %d is gone)", f[0], pid)
		exec.Command("ip", "netns", "del", f[0]).Run()
		os.RemoveAll(filepath.Join("/etc/netns", f[0]))
	}
}

func (l *lab) removeNamespace(ns string) {
	if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
		l.t.Errorf("cleanup: ip netns del %s: %v: %s", ns, err, out)
	}
	if err := os.RemoveAll(filepath.Join("/etc/netns", ns)); err != nil {
		l.t.Errorf("cleanup: %v", err)
	}
}

// ip runs `ip -n NS ARGS…` (configuration only; it sends no traffic).
func (l *lab) ip(host string, args ...string) {
	l.t.Helper()
	args = append([]string{"-n", l.ns(host)}, args...)
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		l.t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

func (l *lab) veth(hostA, ifA, hostB, ifB string) {
	l.t.Helper()
	args := []string{"link", "add", "name", ifA, "netns", l.ns(hostA), "type", "veth", "peer", "name", ifB, "netns", l.ns(hostB)}
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		l.t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
	l.ip(hostA, "link", "set", "dev", ifA, "up")
	l.ip(hostB, "link", "set", "dev", ifB, "up")
}

func (l *lab) addr(host, ifname string, cidrs ...string) {
	l.t.Helper()
	for _, c := range cidrs {
		l.ip(host, "addr", "add", c, "dev", ifname)
	}
}

func (l *lab) resolvConf(host, server string) {
	l.t.Helper()
	dir := filepath.Join("/etc/netns", l.ns(host))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		l.t.Fatal(err)
	}
	conf := fmt.Sprintf("# lnm lab %s\nnameserver %s\noptions timeout:2 attempts:1\n", l.ns(host), server)
	if err := os.WriteFile(filepath.Join(dir, "resolv.conf"), []byte(conf), 0o644); err != nil {
		l.t.Fatal(err)
	}
}

// cmd builds a command that runs inside the host's namespace with a small, clean
// environment (no proxy variables can leak into curl).
func (l *lab) cmd(ctx context.Context, host string, name string, args ...string) *exec.Cmd {
	c := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", l.ns(host), name}, args...)...)
	c.Env = []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=" + l.dir,
		"LANG=C",
	}
	c.Dir = l.dir
	c.WaitDelay = 2 * time.Second
	return c
}

// run runs a client inside the host's namespace, bounded by 20 s.
func (l *lab) run(host string, name string, args ...string) (stdout, stderr string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c := l.cmd(ctx, host, name, args...)
	var o, e bytes.Buffer
	c.Stdout, c.Stderr = &o, &e
	err = c.Run()
	return o.String(), e.String(), err
}

func (l *lab) mustRun(host string, name string, args ...string) string {
	l.t.Helper()
	o, e, err := l.run(host, name, args...)
	if err != nil {
		l.t.Fatalf("in %s: %s %s: %v\nstdout: %s\nstderr: %s", host, name, strings.Join(args, " "), err, o, e)
	}
	return o
}

// proc is a long-running process inside a namespace, stopped at cleanup.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error
}

// start starts a long-running process inside the host's namespace, its output to a log
// file, and registers its stop: SIGTERM, then a failure if it is not gone within 10 s.
// `ip netns exec` execs the program in place, so the PID is the program's own.
func (l *lab) start(host, name string, env []string, prog string, args ...string) *proc {
	l.t.Helper()
	logFile := filepath.Join(l.dir, name+".log")
	f, err := os.Create(logFile)
	if err != nil {
		l.t.Fatal(err)
	}
	c := l.cmd(context.Background(), host, prog, args...)
	c.Env = append(c.Env, env...)
	c.Stdout, c.Stderr = f, f
	// If this test process dies without cleanup, take the process down with it.
	c.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := c.Start(); err != nil {
		f.Close()
		l.t.Fatalf("start %s in %s: %v", name, l.ns(host), err)
	}
	p := &proc{name: name, cmd: c, log: logFile, done: make(chan struct{})}
	go func() {
		p.err = c.Wait()
		f.Close()
		close(p.done)
	}()
	l.mu.Lock()
	l.logs = append(l.logs, logFile)
	l.mu.Unlock()
	l.t.Cleanup(func() { l.stop(p) })
	return p
}

func (l *lab) stop(p *proc) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		if p.err != nil {
			l.t.Errorf("%s (pid %d) exited with %v after SIGTERM, want a clean stop (status 0)", p.name, p.cmd.Process.Pid, p.err)
		}
	case <-time.After(10 * time.Second):
		l.t.Errorf("%s (pid %d) did not exit within 10 s of SIGTERM; killing it", p.name, p.cmd.Process.Pid)
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// exited reports whether the process has ended, with its error.
func (p *proc) exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// dumpLogsOnFailure prints every process log at the end of a failed test, or of any test
// when LNM_LAB_LOGS is set. Register it before starting processes, so that it runs after
// they are stopped and the logs are complete.
func (l *lab) dumpLogsOnFailure() {
	l.t.Cleanup(func() {
		if !l.t.Failed() && os.Getenv("LNM_LAB_LOGS") == "" {
			return
		}
		l.mu.Lock()
		defer l.mu.Unlock()
		for _, f := range l.logs {
			b, err := os.ReadFile(f)
			if err != nil {
				l.t.Logf("log %s: %v", f, err)
				continue
			}
			if len(b) > 64<<10 {
				b = append([]byte("…(cut)…\n"), b[len(b)-64<<10:]...)
			}
			l.t.Logf("===== %s =====\n%s", filepath.Base(f), b)
		}
	})
}

// waitFor polls cond every 50 ms until it holds or the timeout passes.
func waitFor(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// listening reports whether each addr:port in tcp has a listening TCP socket and each in
// udp a bound UDP socket in the host's namespace (read with ss: no traffic). A socket bound to
// a wildcard address counts for every address.
func (l *lab) listening(host string, tcp, udp []string) bool {
	has := func(flag string, want []string) bool {
		out, err := exec.Command("ss", "-N", l.ns(host), "-Hn", flag).Output()
		if err != nil {
			return false
		}
		bound := map[string]bool{}
		for line := range strings.Lines(string(out)) {
			if f := strings.Fields(line); len(f) >= 4 {
				bound[f[3]] = true
			}
		}
		for _, w := range want {
			_, port, _ := net.SplitHostPort(w)
			if !bound[w] && !bound["0.0.0.0:"+port] && !bound["*:"+port] && !bound["[::]:"+port] {
				return false
			}
		}
		return true
	}
	return has("-lt", tcp) && has("-lu", udp)
}

// ---- the internet: certificates, DNS, TLS servers ----

// writeCerts writes the test CA (for the clients' --cacert) and a certificate and key for
// each internet name, which the inet helper loads in its own process.
func (l *lab) writeCerts() {
	l.t.Helper()
	ca := testkit.NewCA(l.t)
	l.caFile = filepath.Join(l.dir, "ca.pem")
	writePEM(l.t, l.caFile, ca.CertPEM())
	names := []string{plantHistorian}
	for _, n := range inetNames {
		names = append(names, n.name)
	}
	for _, name := range names {
		certPEM, keyPEM := testkit.PEM(l.t, ca.Issue(l.t, name))
		writePEM(l.t, filepath.Join(l.dir, name+".pem"), certPEM)
		writePEM(l.t, filepath.Join(l.dir, name+"-key.pem"), keyPEM)
	}
}

// writePEM writes PEM data that only its owner (root: the lab and its processes) may read.
func writePEM(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// startInet runs the internet's DNS and TLS servers inside the inet namespace, in a copy of
// this test binary, and waits until they are bound.
func (l *lab) startInet() *proc { return l.startHelper("inet", "inet") }

// startHelper runs a helper mode of this test binary (see TestLabHelper) in host's namespace
// and waits for its MODE.ready file.
func (l *lab) startHelper(host, mode string) *proc {
	l.t.Helper()
	self, err := os.Executable()
	if err != nil {
		l.t.Fatal(err)
	}
	ready := filepath.Join(l.dir, mode+".ready")
	p := l.start(host, mode, []string{helperEnv + "=" + mode, helperDirEnv + "=" + l.dir},
		self, "-test.run=^TestLabHelper$", "-test.timeout=0", "-test.count=1")
	ok := waitFor(15*time.Second, func() bool {
		if done, _ := p.exited(); done {
			return true
		}
		_, err := os.Stat(ready)
		return err == nil
	})
	if done, err := p.exited(); done {
		l.t.Fatalf("%s helper exited early: %v\n%s", mode, err, readFile(p.log))
	}
	if !ok {
		l.t.Fatalf("%s helper not ready within 15 s\n%s", mode, readFile(p.log))
	}
	return p
}

// inetSeen returns the internet's event log: one line per DNS query, TLS hello, HTTP
// request and MQTT packet it saw.
func (l *lab) inetSeen() string { return readFile(filepath.Join(l.dir, "inet-seen.log")) }

// waitSeen waits briefly for the internet to log want: a client can finish before the
// server has written the line for what it sent.
func (l *lab) waitSeen(want string) bool {
	return waitFor(3*time.Second, func() bool { return strings.Contains(l.inetSeen(), want) })
}

func readFile(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	return string(b)
}

// TestLabHelper is not a test: it is the internet's servers, run by the lab inside the
// inet namespace (startInet). It runs only when the lab sets LNM_LAB_HELPER.
func TestLabHelper(t *testing.T) {
	run := map[string]func(dir string) error{"inet": runInet, "plant": runPlant, "historian": runHistorian}[os.Getenv(helperEnv)]
	if run == nil {
		t.Skip("lab helper process; runs only when the lab starts it inside a namespace")
	}
	if err := run(os.Getenv(helperDirEnv)); err != nil {
		fmt.Fprintln(os.Stderr, os.Getenv(helperEnv), "helper:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// seenLog appends lines to inet-seen.log, one write per line.
type seenLog struct {
	mu sync.Mutex
	f  *os.File
}

func (s *seenLog) printf(format string, args ...any) {
	line := fmt.Sprintf(format, args...) + "\n"
	s.mu.Lock()
	defer s.mu.Unlock()
	s.f.WriteString(line)
	os.Stderr.WriteString(time.Now().Format("15:04:05.000 ") + line)
}

func runInet(dir string) error {
	f, err := os.OpenFile(filepath.Join(dir, "inet-seen.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	seen := &seenLog{f: f}

	certs := map[string]*tls.Certificate{}
	records := map[string]string{} // fqdn → address
	for _, n := range inetNames {
		c, err := tls.LoadX509KeyPair(filepath.Join(dir, n.name+".pem"), filepath.Join(dir, n.name+"-key.pem"))
		if err != nil {
			return err
		}
		certs[n.name] = &c
		records[dns.Fqdn(n.name)] = n.addr
	}
	tlsConfig := func(port int) *tls.Config {
		return &tls.Config{
			GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
				seen.printf("tls port=%d sni=%s remote=%s local=%s", port, hello.ServerName, hello.Conn.RemoteAddr(), hello.Conn.LocalAddr())
				if c, ok := certs[hello.ServerName]; ok {
					return c, nil
				}
				return nil, fmt.Errorf("no certificate for %q", hello.ServerName)
			},
		}
	}

	// DNS: authoritative for test., with NODATA for names that only have names below them.
	dnsMux := dns.NewServeMux()
	dnsMux.HandleFunc("test.", func(w dns.ResponseWriter, req *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(req)
		m.Authoritative = true
		if len(req.Question) != 1 {
			m.Rcode = dns.RcodeFormatError
			w.WriteMsg(m)
			return
		}
		q := req.Question[0]
		name := strings.ToLower(q.Name)
		seen.printf("dns name=%s type=%s remote=%s", strings.TrimSuffix(name, "."), dns.TypeToString[q.Qtype], w.RemoteAddr())
		soa := &dns.SOA{
			Hdr: dns.RR_Header{Name: "test.", Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: 60},
			Ns:  "ns.test.", Mbox: "hostmaster.test.", Serial: 1, Refresh: 3600, Retry: 600, Expire: 86400, Minttl: 60,
		}
		addr, ok := records[name]
		switch {
		case ok && q.Qtype == dns.TypeA:
			m.Answer = append(m.Answer, &dns.A{
				Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60},
				A:   net.ParseIP(addr),
			})
		case ok || name == "test." || hasBelow(records, name):
			m.Ns = append(m.Ns, soa)
		default:
			m.Rcode = dns.RcodeNameError
			m.Ns = append(m.Ns, soa)
		}
		w.WriteMsg(m)
	})
	var wg sync.WaitGroup
	var servers []*dns.Server
	for _, netw := range []string{"udp", "tcp"} {
		started := make(chan struct{})
		s := &dns.Server{Addr: net.JoinHostPort(inetDNS, "53"), Net: netw, Handler: dnsMux, NotifyStartedFunc: func() { close(started) }}
		servers = append(servers, s)
		errc := make(chan error, 1)
		go func() { errc <- s.ListenAndServe() }()
		select {
		case <-started:
		case err := <-errc:
			return fmt.Errorf("dns %s: %w", netw, err)
		}
	}

	// HTTPS on 443: the body names what the server saw, so the test can tell which SNI
	// reached it and from where.
	ln443, err := net.Listen("tcp", ":443")
	if err != nil {
		return err
	}
	httpSrv := &http.Server{
		TLSConfig: tlsConfig(443),
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			local, _ := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
			seen.printf("https sni=%s host=%s path=%s remote=%s local=%s", r.TLS.ServerName, r.Host, r.URL.Path, r.RemoteAddr, local)
			// /bytes/N streams N zero bytes: long downloads for the reload tests.
			if n, err := strconv.ParseInt(strings.TrimPrefix(r.URL.Path, "/bytes/"), 10, 64); err == nil && strings.HasPrefix(r.URL.Path, "/bytes/") {
				w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
				io.CopyN(w, zeros{}, n)
				return
			}
			fmt.Fprintf(w, "lnm lab inet: sni=%s host=%s local=%s remote=%s\n", r.TLS.ServerName, r.Host, local, r.RemoteAddr)
		}),
		ErrorLog: nil,
	}
	go httpSrv.ServeTLS(ln443, "", "")

	// Plain HTTP on 80 for the http ports: the body names the Host and whether the request
	// asked to close the connection.
	ln80, err := net.Listen("tcp", ":80")
	if err != nil {
		return err
	}
	plainSrv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		local, _ := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
		seen.printf("http host=%s path=%s remote=%s local=%s close=%v", r.Host, r.URL.Path, r.RemoteAddr, local, r.Close)
		fmt.Fprintf(w, "lnm lab inet: http host=%s local=%s remote=%s close=%v\n", r.Host, local, r.RemoteAddr, r.Close)
	})}
	go plainSrv.Serve(ln80)

	// 8883: a minimal MQTT 3.1.1 broker over TLS (CONNECT → CONNACK, PUBLISH logged,
	// PINGREQ → PINGRESP, DISCONNECT closes); a client that does not speak MQTT is echoed.
	ln8883, err := tls.Listen("tcp", ":8883", tlsConfig(8883))
	if err != nil {
		return err
	}
	go func() {
		for {
			c, err := ln8883.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				serveMQTT(c.(*tls.Conn), seen)
			}()
		}
	}()

	if err := os.WriteFile(filepath.Join(dir, "inet.ready"), nil, 0o644); err != nil {
		return err
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	for _, s := range servers {
		s.Shutdown()
	}
	ln8883.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	httpSrv.Shutdown(ctx)
	plainSrv.Shutdown(ctx)
	return nil
}

func hasBelow(records map[string]string, name string) bool {
	for r := range records {
		if strings.HasSuffix(r, "."+name) {
			return true
		}
	}
	return false
}

func serveMQTT(c *tls.Conn, seen *seenLog) {
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if err := c.Handshake(); err != nil {
		seen.printf("tls port=8883 handshake-error=%q remote=%s", err.Error(), c.RemoteAddr())
		return
	}
	sni := c.ConnectionState().ServerName
	r := bufio.NewReader(c)
	first, err := r.Peek(1)
	if err != nil {
		seen.printf("mqtt sni=%s closed-before-data remote=%s", sni, c.RemoteAddr())
		return
	}
	if first[0] != 0x10 { // not an MQTT CONNECT: echo
		seen.printf("echo sni=%s remote=%s", sni, c.RemoteAddr())
		io.Copy(c, r)
		return
	}
	for {
		typ, body, err := readMQTTPacket(r)
		if err != nil {
			return
		}
		switch typ >> 4 {
		case 1: // CONNECT
			seen.printf("mqtt sni=%s connect remote=%s", sni, c.RemoteAddr())
			c.Write([]byte{0x20, 0x02, 0x00, 0x00})
		case 3: // PUBLISH, QoS 0 (mosquitto_pub's default)
			if len(body) < 2 {
				return
			}
			n := int(body[0])<<8 | int(body[1])
			if len(body) < 2+n {
				return
			}
			seen.printf("mqtt sni=%s publish topic=%s payload=%q", sni, body[2:2+n], body[2+n:])
		case 12: // PINGREQ
			c.Write([]byte{0xd0, 0x00})
		case 14: // DISCONNECT
			seen.printf("mqtt sni=%s disconnect", sni)
			return
		default:
			return
		}
	}
}

func readMQTTPacket(r *bufio.Reader) (byte, []byte, error) {
	typ, err := r.ReadByte()
	if err != nil {
		return 0, nil, err
	}
	n, mul := 0, 1
	for i := 0; ; i++ {
		b, err := r.ReadByte()
		if err != nil {
			return 0, nil, err
		}
		n += int(b&0x7f) * mul
		if b&0x80 == 0 {
			break
		}
		if i == 3 {
			return 0, nil, errors.New("mqtt: bad remaining length")
		}
		mul *= 128
	}
	body := make([]byte, n)
	_, err = io.ReadFull(r, body)
	return typ, body, err
}

// ---- client output parsing ----

// digResult is what the tests need from dig's output.
type digResult struct {
	status  string   // NOERROR, NXDOMAIN, …
	aa      bool     // authoritative answer flag
	answers []string // A records' addresses
	ttls    []int
}

var (
	digStatusRe = regexp.MustCompile(`status: ([A-Z]+)`)
	digFlagsRe  = regexp.MustCompile(`;; flags: ([a-z ]*);`)
)

// dig runs dig inside host (through the namespace's resolv.conf when server is "").
func (l *lab) dig(host, server, name, qtype string) (digResult, string, error) {
	args := []string{"+time=2", "+tries=1", "+noall", "+comments", "+answer"}
	if server != "" {
		args = append(args, "@"+server)
	}
	args = append(args, name, qtype)
	out, errOut, err := l.run(host, "dig", args...)
	text := "dig " + strings.Join(args, " ") + "\n" + out + errOut
	if err != nil {
		return digResult{}, text, err
	}
	var r digResult
	if m := digStatusRe.FindStringSubmatch(out); m != nil {
		r.status = m[1]
	}
	if m := digFlagsRe.FindStringSubmatch(out); m != nil {
		r.aa = strings.Contains(" "+m[1]+" ", " aa ")
	}
	for line := range strings.Lines(out) {
		f := strings.Fields(line)
		if len(f) == 5 && !strings.HasPrefix(f[0], ";") && f[3] == "A" {
			r.answers = append(r.answers, f[4])
			ttl, _ := strconv.Atoi(f[1])
			r.ttls = append(r.ttls, ttl)
		}
	}
	if r.status == "" {
		return r, text, errors.New("no status in dig output")
	}
	return r, text, nil
}

// curl fetches url inside host and returns the body; extra arguments go before the URL.
func (l *lab) curl(host, url string, extra ...string) (string, string, error) {
	args := append([]string{"-sS", "--noproxy", "*", "--max-time", "10", "--cacert", l.caFile}, extra...)
	args = append(args, url)
	return l.run(host, "curl", args...)
}

// zeros reads as an endless run of zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// ---- the lab without lnm ----

// TestLab checks the lab itself: namespaces, links, the internet's servers with real
// clients, certificates, and that the device cannot reach the internet on its own.
func TestLab(t *testing.T) {
	start := time.Now()
	l := newLab(t)
	l.dumpLogsOnFailure()
	l.startInet()
	t.Logf("lab up in %v", time.Since(start).Round(time.Millisecond))

	t.Run("inet_dns", func(t *testing.T) {
		r, out, err := l.dig("inet", "", "www.contoso.test", "A")
		if err != nil || r.status != "NOERROR" || len(r.answers) != 1 || r.answers[0] != "198.18.5.10" {
			t.Errorf("want www.contoso.test A 198.18.5.10 from the internet's DNS: %v\n%s", err, out)
		}
		r, out, err = l.dig("inet", inetDNS, "nothing.evil.test", "A")
		if err != nil || r.status != "NXDOMAIN" {
			t.Errorf("want NXDOMAIN: %v\n%s", err, out)
		}
		r, out, err = l.dig("inet", inetDNS, "azure.test", "A")
		if err != nil || r.status != "NOERROR" || len(r.answers) != 0 {
			t.Errorf("want NODATA: %v\n%s", err, out)
		}
	})
	t.Run("inet_https_verifies", func(t *testing.T) {
		for _, n := range inetNames {
			body, errOut, err := l.curl("inet", "https://"+n.name+"/")
			if err != nil || !strings.Contains(body, "sni="+n.name+" ") || !strings.Contains(body, "local="+n.addr+":443") {
				t.Errorf("curl https://%s/ inside inet: %v\nbody: %s\nstderr: %s", n.name, err, body, errOut)
			}
		}
	})
	t.Run("inet_mqtt_tls", func(t *testing.T) {
		out, errOut, err := l.run("inet", "openssl", "s_client", "-connect", "mqtt.vendor.test:8883",
			"-servername", "mqtt.vendor.test", "-CAfile", l.caFile, "-verify_return_error")
		if err != nil || !strings.Contains(out, "Verify return code: 0 (ok)") {
			t.Errorf("openssl s_client inside inet: %v\n%s\n%s", err, out, errOut)
		}
		_, errOut, err = l.run("inet", "mosquitto_pub", "-h", "mqtt.vendor.test", "-p", "8883",
			"--cafile", l.caFile, "-t", "lnm/lab", "-m", "hello-lab")
		if err != nil || !l.waitSeen(`topic=lnm/lab payload="hello-lab"`) {
			t.Errorf("mosquitto_pub inside inet: %v\n%s\nseen:\n%s", err, errOut, l.inetSeen())
		}
	})
	t.Run("l4_reaches_inet", func(t *testing.T) {
		r, out, err := l.dig("l4", "", "api.azure.test", "A")
		if err != nil || len(r.answers) != 1 || r.answers[0] != "198.18.5.11" {
			t.Errorf("l4 must reach the internet's DNS: %v\n%s", err, out)
		}
	})
	t.Run("l3_cannot_reach_inet", func(t *testing.T) {
		if body, _, err := l.curl("l3", "https://www.contoso.test/", "--connect-timeout", "2",
			"--resolve", "www.contoso.test:443:198.18.5.10"); err == nil {
			t.Errorf("l3 fetched from 198.18.5.10 directly: %s", body)
		}
	})
	t.Run("dev_cannot_reach_inet", func(t *testing.T) { l.checkIsolation(t) })
	t.Logf("TestLab took %v", time.Since(start).Round(time.Millisecond))
}

// checkIsolation asserts the device has no path to the internet other than the boxes.
func (l *lab) checkIsolation(t *testing.T) {
	if body, errOut, err := l.curl("dev", "https://www.contoso.test/", "--connect-timeout", "2",
		"--resolve", "www.contoso.test:443:198.18.5.10"); err == nil {
		t.Errorf("dev fetched from 198.18.5.10 directly: %s", body)
	} else {
		t.Logf("direct curl from dev failed as it must: %s", strings.TrimSpace(errOut))
	}
	if r, out, err := l.dig("dev", inetDNS, "www.contoso.test", "A"); err == nil {
		t.Errorf("dev reached the internet's DNS directly: %+v\n%s", r, out)
	}
}
