package resolver

import (
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// udpSession is one client socket that sends raw datagrams and reads whatever comes back.
type udpSession struct {
	t *testing.T
	c net.Conn
}

func newUDPSession(t *testing.T, s *Server) *udpSession {
	t.Helper()
	c, err := net.Dial("udp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &udpSession{t: t, c: c}
}

func (u *udpSession) send(b []byte) {
	u.t.Helper()
	if _, err := u.c.Write(b); err != nil {
		u.t.Fatal(err)
	}
}

// read returns the next reply, or nil when none comes within wait.
func (u *udpSession) read(wait time.Duration) []byte {
	u.t.Helper()
	u.c.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, 65535)
	n, err := u.c.Read(buf)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return nil
	}
	if err != nil {
		u.t.Fatal(err)
	}
	return buf[:n]
}

// onlyAnswerTo sends a query with a fresh id after whatever was sent, and checks that the
// one reply on the socket is its answer: nothing sent before it was answered.
func (u *udpSession) onlyAnswerTo(what string) *dns.Msg {
	u.t.Helper()
	q := newReq("api.example.com.", dns.TypeA)
	wire, err := q.Pack()
	if err != nil {
		u.t.Fatal(err)
	}
	u.send(wire)
	var answer *dns.Msg
	for answer == nil {
		b := u.read(10 * time.Second)
		if b == nil {
			u.t.Fatalf("%s: the query sent after it got no answer in 10 s", what)
		}
		m := new(dns.Msg)
		if err := m.Unpack(b); err != nil || m.Id != q.Id {
			u.t.Fatalf("%s: got a reply to it (% x)", what, b[:min(len(b), 16)])
		}
		answer = m
	}
	if b := u.read(300 * time.Millisecond); b != nil {
		u.t.Fatalf("%s: a late reply (% x)", what, b[:min(len(b), 16)])
	}
	return answer
}

// TestCase25GarbageHeadersGetSilence: datagrams too short to hold a DNS header (empty, 3
// bytes, 11 bytes) are dropped without a reply: no reflection of garbage (faults catalog
// case 25). The server answers the next query.
func TestCase25GarbageHeadersGetSilence(t *testing.T) {
	s := startServer(t, Config{})
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"empty", []byte{}},
		{"3 bytes", []byte{1, 2, 3}},
		{"11 bytes", []byte{0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0}},
	} {
		u := newUDPSession(t, s)
		u.send(tc.b)
		if m := u.onlyAnswerTo(tc.name); m.Rcode != dns.RcodeSuccess {
			t.Errorf("%s: the next query got %v", tc.name, m)
		}
	}
}

// TestCase26UnknownEDNSFlagCleared: a query with an EDNS flag the server does not know (one
// of the Z bits) gets an OPT with only DO echoed: unknown flags are cleared (RFC 6891
// §6.1.4), over UDP and TCP.
func TestCase26UnknownEDNSFlagCleared(t *testing.T) {
	s := startServer(t, Config{})
	for _, network := range []string{"udp", "tcp"} {
		for _, do := range []bool{false, true} {
			req := newReq("api.example.com.", dns.TypeA, withEDNS(1232, do))
			req.IsEdns0().SetZ(0x4001) // two flags no RFC defines
			resp := ask(t, network, s.Addr(), req)
			opt := resp.IsEdns0()
			if resp.Rcode != dns.RcodeSuccess || opt == nil {
				t.Fatalf("%s DO=%v: %v, want an answer with an OPT", network, do, resp)
			}
			if opt.Z() != 0 || opt.Do() != do {
				t.Errorf("%s DO=%v: reply OPT flags Z=%#x DO=%v, want Z clear and DO echoed", network, do, opt.Z(), opt.Do())
			}
		}
	}
}

// TestCase36QueryOfDeath sends what the faults catalog's case 36 lists, by hand: a label of
// 64 bytes, a name of over 255, an additional record whose RDLENGTH promises 65,535 bytes,
// and 2,000 random datagrams (some with a valid header). Each gets FORMERR or nothing, never
// an answer; the server keeps serving, and its CPU per packet stays small.
func TestCase36QueryOfDeath(t *testing.T) {
	s := startServer(t, Config{})
	header := func(id uint16, qd, ar uint16) []byte {
		b := binary.BigEndian.AppendUint16(nil, id)
		b = append(b, 0x01, 0x00) // RD
		b = binary.BigEndian.AppendUint16(b, qd)
		b = append(b, 0, 0, 0, 0)
		return binary.BigEndian.AppendUint16(b, ar)
	}
	question := func(labels ...[]byte) []byte {
		var b []byte
		for _, l := range labels {
			b = append(append(b, byte(len(l))), l...)
		}
		return append(b, 0, 0, 1, 0, 1) // root, A, IN
	}
	label := func(n int) []byte {
		l := make([]byte, n)
		for i := range l {
			l[i] = 'a'
		}
		return l
	}
	huge := append(header(3, 1, 1), question([]byte("api"), []byte("example"), []byte("com"))...)
	huge = append(huge, 0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0xff, 0xff, 1, 2, 3) // OPT, RDLENGTH 65535, 3 bytes
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"64-byte label", append(header(1, 1, 0), question(label(64), []byte("com"))...)},
		{"name over 255", append(header(2, 1, 0), question(label(63), label(63), label(63), label(63), []byte("com"))...)},
		{"RDLENGTH 65535", huge},
	} {
		u := newUDPSession(t, s)
		u.send(tc.b)
		if b := u.read(2 * time.Second); b != nil {
			m := new(dns.Msg)
			if err := m.Unpack(b); err == nil && (m.Rcode != dns.RcodeFormatError || len(m.Answer) != 0) {
				t.Errorf("%s: %v, want FORMERR or silence", tc.name, m)
			}
		}
		if m := rawUDP(t, s, mustPack(t, newReq("api.example.com.", dns.TypeA)), 5*time.Second); m == nil || m.Rcode != dns.RcodeSuccess {
			t.Fatalf("after %s: %v", tc.name, m)
		}
	}

	rng := rand.New(rand.NewPCG(36, 36))
	u := newUDPSession(t, s)
	var before, after syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &before)
	const packets = 2000
	for i := range packets {
		b := make([]byte, 1+rng.IntN(600))
		for j := range b {
			b[j] = byte(rng.Uint32())
		}
		if i%2 == 0 && len(b) >= 12 {
			copy(b, header(uint16(i), 1, 0)) // a valid header over garbage
		}
		u.send(b)
		if i%50 == 0 { // do not outrun the socket buffer
			if m := rawUDP(t, s, mustPack(t, newReq("api.example.com.", dns.TypeA)), 10*time.Second); m == nil {
				t.Fatalf("no answer after %d random datagrams", i+1)
			}
		}
	}
	if m := rawUDP(t, s, mustPack(t, newReq("api.example.com.", dns.TypeA)), 10*time.Second); m == nil || m.Rcode != dns.RcodeSuccess {
		t.Fatalf("after %d random datagrams: %v", packets, m)
	}
	syscall.Getrusage(syscall.RUSAGE_SELF, &after)
	cpu := time.Duration(after.Utime.Nano() + after.Stime.Nano() - before.Utime.Nano() - before.Stime.Nano())
	perPacket := cpu / packets
	t.Logf("%d random datagrams: %v of CPU (server and client), %v a packet", packets, cpu, perPacket)
	if perPacket > 5*time.Millisecond {
		t.Errorf("%v of CPU a packet: something is far from linear", perPacket)
	}
	// Whatever replies the random datagrams got were never answers.
	for {
		b := u.read(300 * time.Millisecond)
		if b == nil {
			break
		}
		m := new(dns.Msg)
		if m.Unpack(b) == nil && len(m.Answer) != 0 {
			t.Errorf("a random datagram was answered with data: %v", m)
		}
	}
}

func mustPack(t *testing.T, m *dns.Msg) []byte {
	t.Helper()
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return b
}
