package resolver

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/lnm-project/lnm/allowlist"
	"github.com/lnm-project/lnm/internal/testkit"
)

// TestMain fails the package when any test leaves a goroutine running.
func TestMain(m *testing.M) { testkit.Main(m) }

var loopback = netip.MustParseAddrPort("127.0.0.1:0")

// startServer starts a server on 127.0.0.1:0 unless cfg says otherwise; Close runs at cleanup.
// Each setup runs on the server before Start.
func startServer(t testing.TB, cfg Config, setup ...func(*Server)) *Server {
	t.Helper()
	if !cfg.Addr.IsValid() {
		cfg.Addr = loopback
	}
	if cfg.List == nil {
		cfg.List = mustList(t, "api.example.com", "*.azure.test")
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range setup {
		f(s)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return s
}

// ask sends one question with miekg's client over network ("udp" or "tcp").
func ask(t testing.TB, network string, srv netip.AddrPort, req *dns.Msg) *dns.Msg {
	t.Helper()
	c := dns.Client{Net: network, Timeout: 5 * time.Second}
	resp, _, err := c.Exchange(req, srv.String())
	if err != nil {
		t.Fatalf("%s query %s: %v", network, req.Question[0].String(), err)
	}
	return resp
}

func answerAddrs(m *dns.Msg) []string {
	var s []string
	for _, rr := range m.Answer {
		switch rr := rr.(type) {
		case *dns.A:
			s = append(s, rr.A.String())
		case *dns.AAAA:
			s = append(s, rr.AAAA.String())
		}
	}
	return s
}

func TestServerUDPAndTCP(t *testing.T) {
	s := startServer(t, Config{})
	for _, network := range []string{"udp", "tcp"} {
		t.Run(network, func(t *testing.T) {
			resp := ask(t, network, s.Addr(), newReq("WWW.Azure.Test.", dns.TypeA))
			if resp.Rcode != dns.RcodeSuccess || !resp.Authoritative || resp.RecursionAvailable {
				t.Errorf("rcode=%s aa=%v ra=%v", dns.RcodeToString[resp.Rcode], resp.Authoritative, resp.RecursionAvailable)
			}
			if got := answerAddrs(resp); len(got) != 1 || got[0] != "127.0.0.1" {
				t.Errorf("answers %v, want [127.0.0.1]", got)
			}
			if resp.Answer[0].Header().Name != "WWW.Azure.Test." {
				t.Errorf("owner %q, want the query's casing", resp.Answer[0].Header().Name)
			}
			resp = ask(t, network, s.Addr(), newReq("evil.example.org.", dns.TypeA))
			if resp.Rcode != dns.RcodeNameError || len(resp.Ns) != 1 || resp.Ns[0].Header().Rrtype != dns.TypeSOA {
				t.Errorf("denied name: rcode=%s ns=%v, want NXDOMAIN with SOA", dns.RcodeToString[resp.Rcode], resp.Ns)
			}
			resp = ask(t, network, s.Addr(), newReq("api.example.com.", dns.TypeAAAA))
			if resp.Rcode != dns.RcodeSuccess || len(resp.Answer) != 0 {
				t.Errorf("AAAA on an IPv4 box: rcode=%s answer=%v, want NODATA", dns.RcodeToString[resp.Rcode], resp.Answer)
			}
		})
	}
}

func TestServerIPv6(t *testing.T) {
	s, err := New(Config{Addr: netip.MustParseAddrPort("[::1]:0"), List: mustList(t, "api.example.com")})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	defer s.Close()
	resp := ask(t, "udp", s.Addr(), newReq("api.example.com.", dns.TypeAAAA))
	if got := answerAddrs(resp); len(got) != 1 || got[0] != "::1" {
		t.Errorf("AAAA answers %v, want [::1]", got)
	}
	resp = ask(t, "tcp", s.Addr(), newReq("api.example.com.", dns.TypeA))
	if resp.Rcode != dns.RcodeSuccess || len(resp.Answer) != 0 {
		t.Errorf("A on an IPv6-only box: rcode=%s answer=%v, want NODATA", dns.RcodeToString[resp.Rcode], resp.Answer)
	}
}

// TestServerWildcard listens on every IPv4 address and asks over loopback, at 127.0.0.1 and
// at 127.0.0.2: the answer is the address the query was sent to, not 0.0.0.0, and the UDP
// reply comes from it (miekg's client uses a connected socket, which drops replies from any
// other source). For 127.0.0.2 the kernel alone would send the reply from 127.0.0.1, the
// loopback's first address, so this checks that the server sets the source itself.
func TestServerWildcard(t *testing.T) {
	s := startServer(t, Config{Addr: netip.MustParseAddrPort("0.0.0.0:0"), Answer6: netip.MustParseAddr("2001:db8::53")})
	for _, local := range []string{"127.0.0.1", "127.0.0.2"} {
		target := netip.AddrPortFrom(netip.MustParseAddr(local), s.Addr().Port())
		for _, network := range []string{"udp", "tcp"} {
			resp := ask(t, network, target, newReq("api.example.com.", dns.TypeA))
			if got := answerAddrs(resp); len(got) != 1 || got[0] != local {
				t.Errorf("%s to %s: A answers %v, want the local address [%s]", network, local, got, local)
			}
			resp = ask(t, network, target, newReq("api.example.com.", dns.TypeAAAA))
			if got := answerAddrs(resp); len(got) != 1 || got[0] != "2001:db8::53" {
				t.Errorf("%s to %s: AAAA answers %v, want the configured [2001:db8::53]", network, local, got)
			}
		}
	}
}

func TestServerSourcesAndNewList(t *testing.T) {
	s := startServer(t, Config{Sources: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	if resp := ask(t, "udp", s.Addr(), newReq("api.example.com.", dns.TypeA)); resp.Rcode != dns.RcodeSuccess {
		t.Fatalf("rcode %s before the new list", dns.RcodeToString[resp.Rcode])
	}
	cfg := s.cfg
	cfg.List = mustList(t, "other.example.com")
	if err := reconfigure(s, cfg); err != nil {
		t.Fatal(err)
	}
	if resp := ask(t, "udp", s.Addr(), newReq("api.example.com.", dns.TypeA)); resp.Rcode != dns.RcodeNameError {
		t.Errorf("rcode %s after the name left the list, want NXDOMAIN", dns.RcodeToString[resp.Rcode])
	}

	closed := startServer(t, Config{Sources: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}})
	resp := ask(t, "tcp", closed.Addr(), newReq("api.example.com.", dns.TypeA))
	if resp.Rcode != dns.RcodeRefused || len(resp.Answer) != 0 {
		t.Errorf("outsider: rcode=%s answer=%v, want REFUSED", dns.RcodeToString[resp.Rcode], resp.Answer)
	}
}

func TestServerOnQuery(t *testing.T) {
	var mu sync.Mutex
	var events []QueryEvent
	s := startServer(t, Config{OnQuery: func(e QueryEvent) error {
		mu.Lock()
		events = append(events, e)
		mu.Unlock()
		return nil
	}})
	ask(t, "udp", s.Addr(), newReq("Api.Example.com.", dns.TypeA))
	ask(t, "tcp", s.Addr(), newReq("evil.example.org.", dns.TypeHTTPS))
	mu.Lock()
	defer mu.Unlock()
	if len(events) != 2 {
		t.Fatalf("%d events, want 2: %+v", len(events), events)
	}
	a, d := events[0], events[1]
	if a.QName != "Api.Example.com." || a.Name != "api.example.com" || a.Type != dns.TypeA || a.TCP ||
		a.Verdict != VerdictAllow || a.Reason != allowlist.ReasonListed || a.Rule == nil || a.Rule.Pattern.String() != "api.example.com" ||
		a.Rcode != dns.RcodeSuccess || len(a.Answers) != 1 || a.Answers[0] != netip.MustParseAddr("127.0.0.1") ||
		a.Client.Addr() != netip.MustParseAddr("127.0.0.1") || a.Client.Port() == 0 || a.Time.IsZero() {
		t.Errorf("allow event %+v", a)
	}
	if d.Name != "evil.example.org" || !d.TCP || d.Verdict != VerdictDeny || d.Reason != allowlist.ReasonNotListed ||
		d.Rule != nil || d.Rcode != dns.RcodeNameError || len(d.Answers) != 0 || d.Type != dns.TypeHTTPS {
		t.Errorf("deny event %+v", d)
	}
}

// writeTCP frames msgs (RFC 1035 §4.2.2) into one buffer, so they arrive pipelined.
func frame(t testing.TB, msgs ...*dns.Msg) []byte {
	t.Helper()
	var b []byte
	for _, m := range msgs {
		wire, err := m.Pack()
		if err != nil {
			t.Fatal(err)
		}
		b = binary.BigEndian.AppendUint16(b, uint16(len(wire)))
		b = append(b, wire...)
	}
	return b
}

func readTCPMsg(t testing.TB, r io.Reader) *dns.Msg {
	t.Helper()
	var n uint16
	if err := binary.Read(r, binary.BigEndian, &n); err != nil {
		t.Fatalf("read length: %v", err)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		t.Fatalf("read message: %v", err)
	}
	m := new(dns.Msg)
	if err := m.Unpack(b); err != nil {
		t.Fatalf("unpack: %v", err)
	}
	return m
}

func dialTCP(t testing.TB, s *Server) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return c
}

// TestServerTCPPipelining sends glibc's A+AAAA pair and then 50 queries back to back on one
// connection before reading anything (RFC 7766 §6.2.1.1).
func TestServerTCPPipelining(t *testing.T) {
	s := startServer(t, Config{})
	c := dialTCP(t, s)
	r := bufio.NewReader(c)

	pair := []*dns.Msg{newReq("api.example.com.", dns.TypeA), newReq("api.example.com.", dns.TypeAAAA)}
	pair[1].Id = pair[0].Id + 1
	if _, err := c.Write(frame(t, pair...)); err != nil {
		t.Fatal(err)
	}
	for range pair {
		readTCPMsg(t, r)
	}

	want := map[uint16]int{} // id → expected rcode
	var msgs []*dns.Msg
	for i := range 50 {
		m := newReq("api.example.com.", dns.TypeA)
		rcode := dns.RcodeSuccess
		if i%3 == 0 {
			m = newReq("n"+string(rune('a'+i%26))+".example.org.", dns.TypeA)
			rcode = dns.RcodeNameError
		}
		m.Id = uint16(1000 + i)
		want[m.Id] = rcode
		msgs = append(msgs, m)
	}
	if _, err := c.Write(frame(t, msgs...)); err != nil {
		t.Fatal(err)
	}
	for range msgs {
		m := readTCPMsg(t, r)
		rcode, ok := want[m.Id]
		if !ok {
			t.Fatalf("reply with unknown or repeated id %d", m.Id)
		}
		if m.Rcode != rcode {
			t.Errorf("id %d: rcode %s, want %s", m.Id, dns.RcodeToString[m.Rcode], dns.RcodeToString[rcode])
		}
		delete(want, m.Id)
	}
	if len(want) != 0 {
		t.Errorf("unanswered ids %v", want)
	}
}

// TestServerTCPFraming sends the length and the message separately, then a message one byte
// at a time.
func TestServerTCPFraming(t *testing.T) {
	s := startServer(t, Config{})
	c := dialTCP(t, s)
	r := bufio.NewReader(c)
	b := frame(t, newReq("api.example.com.", dns.TypeA))
	c.Write(b[:2])
	time.Sleep(20 * time.Millisecond) // let the halves travel as two segments
	c.Write(b[2:])
	if m := readTCPMsg(t, r); m.Rcode != dns.RcodeSuccess || len(m.Answer) != 1 {
		t.Errorf("split length: %v", m)
	}
	for i := range b {
		if _, err := c.Write(b[i : i+1]); err != nil {
			t.Fatal(err)
		}
	}
	if m := readTCPMsg(t, r); m.Rcode != dns.RcodeSuccess || len(m.Answer) != 1 {
		t.Errorf("byte at a time: %v", m)
	}
}

// rawUDP sends b and returns the reply, or nil when none came within wait.
func rawUDP(t testing.TB, s *Server, b []byte, wait time.Duration) *dns.Msg {
	t.Helper()
	c, err := net.Dial("udp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(b); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, 65535)
	n, err := c.Read(buf)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	m := new(dns.Msg)
	if err := m.Unpack(buf[:n]); err != nil {
		t.Fatalf("unpack reply: %v", err)
	}
	return m
}

func TestServerMalformed(t *testing.T) {
	s := startServer(t, Config{})
	pack := func(m *dns.Msg) []byte {
		b, err := m.Pack()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	response := newReq("api.example.com.", dns.TypeA)
	response.Response = true
	update := newReq("api.example.com.", dns.TypeA, withOpcode(dns.OpcodeUpdate))
	query := pack(newReq("api.example.com.", dns.TypeA))

	if m := rawUDP(t, s, pack(response), 200*time.Millisecond); m != nil {
		t.Errorf("a response was answered: %v", m)
	}
	if m := rawUDP(t, s, pack(update), time.Second); m == nil || m.Rcode != dns.RcodeNotImplemented {
		t.Errorf("UPDATE: %v, want NOTIMP", m)
	}
	// A question cut short: the header promises a question the packet does not hold.
	if m := rawUDP(t, s, query[:len(query)-3], time.Second); m == nil || m.Rcode != dns.RcodeFormatError {
		t.Errorf("cut question: %v, want FORMERR", m)
	}
	// A compression pointer to itself.
	loop := append(append([]byte(nil), query[:12]...), 0xc0, 12, 0, 1, 0, 1)
	if m := rawUDP(t, s, loop, time.Second); m == nil || m.Rcode != dns.RcodeFormatError {
		t.Errorf("pointer loop: %v, want FORMERR", m)
	}
	// A PROXYv2-looking datagram and a short one: dropped or FORMERR, never a crash.
	rawUDP(t, s, []byte("\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c\x7f\x00\x00\x01\x7f\x00\x00\x01\x00\x35\x00\x35"), 200*time.Millisecond)
	rawUDP(t, s, []byte{1, 2, 3}, 200*time.Millisecond)
	// Still serving.
	if m := rawUDP(t, s, query, time.Second); m == nil || m.Rcode != dns.RcodeSuccess {
		t.Errorf("after malformed input: %v", m)
	}
}

func TestServerPanicIsServfail(t *testing.T) {
	var events atomic.Int32
	s := startServer(t, Config{OnQuery: func(e QueryEvent) error {
		if e.Verdict == VerdictError && e.Reason == ReasonPanic && e.Rcode == dns.RcodeServerFailure && e.Client.Port() != 0 {
			events.Add(1)
		}
		return nil
	}}, func(s *Server) {
		s.testHook = func(m *dns.Msg) {
			if m.Question[0].Name == "boom.example.com." {
				panic("injected")
			}
		}
	})
	for _, network := range []string{"udp", "tcp"} {
		req := newReq("boom.example.com.", dns.TypeA)
		resp := ask(t, network, s.Addr(), req)
		if resp.Rcode != dns.RcodeServerFailure || resp.Id != req.Id || resp.Question[0] != req.Question[0] {
			t.Errorf("%s: %v, want SERVFAIL for the same id and question", network, resp)
		}
		if resp := ask(t, network, s.Addr(), newReq("api.example.com.", dns.TypeA)); resp.Rcode != dns.RcodeSuccess {
			t.Errorf("%s: after a panic rcode %s", network, dns.RcodeToString[resp.Rcode])
		}
	}
	if n := events.Load(); n != 2 {
		t.Errorf("%d panic events, want 2", n)
	}
}

// TestServerPanickingOnQuery: a broken audit hook costs the client a SERVFAIL, not the
// process.
func TestServerPanickingOnQuery(t *testing.T) {
	s := startServer(t, Config{OnQuery: func(QueryEvent) error { panic("audit broke") }})
	if resp := ask(t, "udp", s.Addr(), newReq("api.example.com.", dns.TypeA)); resp.Rcode != dns.RcodeServerFailure {
		t.Errorf("rcode %s, want SERVFAIL", dns.RcodeToString[resp.Rcode])
	}
}

// TestServerStartClose checks the lifecycle and that no goroutine outlives Close, even with a
// client holding an idle TCP connection.
func TestServerStartClose(t *testing.T) {
	before := testkit.Goroutines()
	var started atomic.Bool
	s, err := New(Config{Addr: loopback, NotifyStarted: func() { started.Store(true) }})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	if !started.Load() {
		t.Error("NotifyStarted was not called before Start returned")
	}
	if err := s.Start(); err == nil {
		t.Error("second Start succeeded")
	}
	ask(t, "udp", s.Addr(), newReq("api.example.com.", dns.TypeA))
	idle, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	idle.Write(frame(t, newReq("api.example.com.", dns.TypeA)))
	readTCPMsg(t, idle)

	t0 := time.Now()
	if err := s.Close(); err != nil {
		t.Errorf("close: %v", err)
	}
	if d := time.Since(t0); d > closeTimeout {
		t.Errorf("Close took %s", d)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second close: %v", err)
	}
	if err := s.Start(); err == nil {
		t.Error("Start after Close succeeded")
	}
	before.NoneNew(t) // the idle client is still connected
}

func TestServerStartErrorNamesAddress(t *testing.T) {
	s := startServer(t, Config{})
	dup, err := New(Config{Addr: s.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	err = dup.Start()
	if err == nil || !strings.Contains(err.Error(), s.Addr().String()) {
		t.Errorf("Start on a taken port: %v, want an error naming %s", err, s.Addr())
	}
}

func TestNewRejects(t *testing.T) {
	for name, cfg := range map[string]Config{
		"no address":       {},
		"Answer4 is IPv6":  {Addr: loopback, Answer4: netip.MustParseAddr("2001:db8::1")},
		"Answer6 is IPv4":  {Addr: loopback, Answer6: netip.MustParseAddr("192.0.2.1")},
		"TTL below 1s":     {Addr: loopback, TTL: time.Millisecond},
		"zone without any": {Addr: loopback, Zones: []Zone{{Name: "plant.internal"}}},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: New succeeded", name)
		}
	}
}

// TestServerMaxTCPConns: past the cap a connection waits in the backlog until one closes.
func TestServerMaxTCPConns(t *testing.T) {
	s := startServer(t, Config{MaxTCPConns: 1})
	first := dialTCP(t, s)
	first.Write(frame(t, newReq("api.example.com.", dns.TypeA)))
	readTCPMsg(t, first)

	second := dialTCP(t, s)
	second.Write(frame(t, newReq("api.example.com.", dns.TypeA)))
	second.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	var b [1]byte
	if _, err := second.Read(b[:]); err == nil {
		t.Fatal("a second connection was served past MaxTCPConns=1")
	}
	first.Close()
	second.SetReadDeadline(time.Now().Add(5 * time.Second))
	if m := readTCPMsg(t, second); m.Rcode != dns.RcodeSuccess {
		t.Errorf("after the first closed: %v", m)
	}
}

// TestServerFailsClosed: when the query cannot be recorded, the client gets SERVFAIL, never
// the answer, and the server recovers as soon as recording works again.
func TestServerFailsClosed(t *testing.T) {
	var failing atomic.Bool
	failing.Store(true)
	s := startServer(t, Config{OnQuery: func(QueryEvent) error {
		if failing.Load() {
			return errors.New("audit: disk full")
		}
		return nil
	}})
	for _, network := range []string{"udp", "tcp"} {
		if resp := ask(t, network, s.Addr(), newReq("api.example.com.", dns.TypeA)); resp.Rcode != dns.RcodeServerFailure || len(resp.Answer) != 0 {
			t.Errorf("%s while failing: rcode %s, %d answers; want SERVFAIL and none", network, dns.RcodeToString[resp.Rcode], len(resp.Answer))
		}
	}
	failing.Store(false)
	if resp := ask(t, "udp", s.Addr(), newReq("api.example.com.", dns.TypeA)); resp.Rcode != dns.RcodeSuccess || len(resp.Answer) != 1 {
		t.Errorf("after recovery: rcode %s, %d answers", dns.RcodeToString[resp.Rcode], len(resp.Answer))
	}
}

// TestServerReconfigure: a running server takes a new list, TTL, sources and learn mode
// without rebinding; the listen address cannot change (see TestPrepareRefuses).
func TestServerReconfigure(t *testing.T) {
	var mu sync.Mutex
	var verdicts []Verdict
	s := startServer(t, Config{OnQuery: func(e QueryEvent) error {
		mu.Lock()
		verdicts = append(verdicts, e.Verdict)
		mu.Unlock()
		return nil
	}})
	addr := s.Addr()
	cfg := s.cfg
	cfg.List, cfg.TTL, cfg.Learn = mustList(t, "other.example.com"), 5*time.Second, true
	if err := reconfigure(s, cfg); err != nil {
		t.Fatal(err)
	}
	resp := ask(t, "udp", addr, newReq("unlisted.example.net.", dns.TypeA))
	if resp.Rcode != dns.RcodeSuccess || len(resp.Answer) != 1 || resp.Answer[0].Header().Ttl != 5 {
		t.Fatalf("learn mode: %v, want the box's address with TTL 5", resp)
	}
	cfg.Learn = false
	if err := reconfigure(s, cfg); err != nil {
		t.Fatal(err)
	}
	if resp := ask(t, "tcp", addr, newReq("unlisted.example.net.", dns.TypeA)); resp.Rcode != dns.RcodeNameError {
		t.Errorf("enforce after learn: rcode %s, want NXDOMAIN", dns.RcodeToString[resp.Rcode])
	}
	mu.Lock()
	if len(verdicts) != 2 || verdicts[0] != VerdictWouldDeny || verdicts[1] != VerdictDeny {
		t.Errorf("verdicts %v, want would-deny then deny", verdicts)
	}
	mu.Unlock()
	cfg.Addr = netip.MustParseAddrPort("127.0.0.1:1")
	if err := reconfigure(s, cfg); err == nil {
		t.Error("the listen address changed while running")
	}
}

// TestServerDenyRefused: with DenyRefused a name off the list gets a bare REFUSED over UDP and
// TCP, audited as the denial it is; a reconfiguration turns it back to NXDOMAIN.
func TestServerDenyRefused(t *testing.T) {
	var mu sync.Mutex
	var events []QueryEvent
	s := startServer(t, Config{DenyRefused: true, OnQuery: func(e QueryEvent) error {
		mu.Lock()
		events = append(events, e)
		mu.Unlock()
		return nil
	}})
	for _, network := range []string{"udp", "tcp"} {
		resp := ask(t, network, s.Addr(), newReq("evil.example.org.", dns.TypeA))
		if resp.Rcode != dns.RcodeRefused || resp.Authoritative || len(resp.Answer) != 0 || len(resp.Ns) != 0 {
			t.Errorf("%s: rcode %s aa %v answer %v ns %v, want a bare REFUSED", network, dns.RcodeToString[resp.Rcode], resp.Authoritative, resp.Answer, resp.Ns)
		}
	}
	if resp := ask(t, "udp", s.Addr(), newReq("api.example.com.", dns.TypeA)); resp.Rcode != dns.RcodeSuccess || len(resp.Answer) != 1 {
		t.Errorf("allowed name: %v", resp)
	}
	cfg := s.cfg
	cfg.DenyRefused = false
	next, err := s.Prepare(cfg)
	if err != nil {
		t.Fatal(err)
	}
	next.Commit()
	if resp := ask(t, "udp", s.Addr(), newReq("evil.example.org.", dns.TypeA)); resp.Rcode != dns.RcodeNameError || len(resp.Ns) != 1 {
		t.Errorf("after reconfiguring to NXDOMAIN: rcode %s ns %v", dns.RcodeToString[resp.Rcode], resp.Ns)
	}

	mu.Lock()
	defer mu.Unlock()
	if len(events) != 4 {
		t.Fatalf("%d events, want 4", len(events))
	}
	for i, want := range []int{dns.RcodeRefused, dns.RcodeRefused, dns.RcodeSuccess, dns.RcodeNameError} {
		e := events[i]
		wantVerdict, wantReason := VerdictDeny, allowlist.ReasonNotListed
		if want == dns.RcodeSuccess {
			wantVerdict, wantReason = VerdictAllow, allowlist.ReasonListed
		}
		if e.Rcode != want || e.Verdict != wantVerdict || e.Reason != wantReason {
			t.Errorf("event %d: rcode %s verdict %s reason %s, want %s %s %s", i, dns.RcodeToString[e.Rcode], e.Verdict, e.Reason,
				dns.RcodeToString[want], wantVerdict, wantReason)
		}
	}
}
