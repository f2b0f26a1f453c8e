package resolver

import (
	"bufio"
	"errors"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// TestCase34CapAtOneThousand is the faults catalog's case 34 at its size: 1,000 TCP
// connections from twenty clients (50 each, under the per-client share) fill a server whose
// cap is 1,000. The next connection waits in the backlog unanswered, UDP answers meanwhile,
// and the waiting connection is served as soon as one of the thousand closes.
func TestCase34CapAtOneThousand(t *testing.T) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		t.Fatal(err)
	}
	if rl.Cur < 2500 {
		t.Skipf("LOUD SKIP: RLIMIT_NOFILE %d: 1,000 connections need both their ends in this process", rl.Cur)
	}
	const limit = 1000
	// Long timers, so that the thousand stay while the table is full (it shrinks them to a
	// tenth: a minute).
	s := startServer(t, Config{MaxTCPConns: limit, MaxTCPPerSource: 64}, func(s *Server) {
		s.tcpTimers = tcpTimers{first: 10 * time.Minute, idle: 10 * time.Minute}
	})
	lim := s.tcpLim.Load()
	conns := make([]net.Conn, 0, limit)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := range limit {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 2, byte(1+i%20))}, Timeout: 10 * time.Second}
		c, err := d.Dial("tcp", s.Addr().String())
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		conns = append(conns, c)
	}
	waitFor(t, "a thousand connections held", func() bool { return lim.open.Load() == limit })

	next, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer next.Close()
	next.Write(frame(t, newReq("api.example.com.", dns.TypeA)))
	next.SetReadDeadline(time.Now().Add(time.Second))
	if _, err := next.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("connection 1,001 past the cap of 1,000: %v, want no answer while the table is full", err)
	}
	if got := lim.open.Load(); got != limit {
		t.Errorf("%d connections held, want the cap %d", got, limit)
	}
	if m := rawUDP(t, s, mustPack(t, newReq("api.example.com.", dns.TypeA)), 10*time.Second); m == nil || m.Rcode != dns.RcodeSuccess || len(m.Answer) != 1 {
		t.Errorf("UDP while TCP is at its cap: %v", m)
	}
	conns[0].Close()
	next.SetReadDeadline(time.Now().Add(30 * time.Second))
	if m := readTCPMsg(t, bufio.NewReader(next)); m.Rcode != dns.RcodeSuccess || len(m.Answer) != 1 {
		t.Errorf("connection 1,001 once a slot freed: %v", m)
	}
}
