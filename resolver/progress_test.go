package resolver

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func TestProgressStalled(t *testing.T) {
	cases := []struct {
		name      string
		prev, now Progress
		want      string // substring of the error; "" for none
	}{
		{"idle", Progress{}, Progress{}, ""},
		{"idle after work", Progress{Read: 5, Answered: 5}, Progress{Read: 5, Answered: 5}, ""},
		{"reading", Progress{Read: 5, Queued: true}, Progress{Read: 6, Queued: true}, ""},
		{"queue drained", Progress{Read: 5, Queued: true}, Progress{Read: 5}, ""},
		{"read loop wedged", Progress{Read: 5, Queued: true}, Progress{Read: 5, Queued: true}, "read loop took none"},
		{"answering", Progress{Running: 2, Answered: 5}, Progress{Running: 2, Answered: 9}, ""},
		{"answers finished", Progress{Running: 2, Answered: 5}, Progress{Answered: 5}, ""},
		{"handlers wedged", Progress{Running: 1, Answered: 5}, Progress{Running: 3, Answered: 5}, "3 queries are being answered and none finished"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.now.Stalled(c.prev)
			if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
				t.Errorf("Stalled = %v, want %q", err, c.want)
			}
		})
	}
}

// TestProgressSeesWedgedHandler blocks every handler (as a deadlock in the audit path would)
// and checks that Progress sees queries running with none finished, then recovery.
func TestProgressSeesWedgedHandler(t *testing.T) {
	release := make(chan struct{})
	s := startServer(t, Config{}, func(s *Server) {
		s.testHook = func(*dns.Msg) { <-release }
	})
	idle := s.Progress()
	if err := s.Progress().Stalled(idle); err != nil {
		t.Fatalf("idle server: %v", err)
	}
	c, err := net.Dial("udp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	query, _ := newReq("api.example.com.", dns.TypeA).Pack()
	c.Write(query)
	prev := waitRunning(t, s, 1)
	c.Write(query)
	now := waitRunning(t, s, 2)
	if now.Read < prev.Read+1 {
		t.Errorf("read %d then %d: the read loop should still take datagrams", prev.Read, now.Read)
	}
	if err := now.Stalled(prev); err == nil || !strings.Contains(err.Error(), "none finished") {
		t.Errorf("wedged handlers: Stalled = %v", err)
	}
	close(release)
	deadline := time.Now().Add(5 * time.Second)
	for s.Progress().Running != 0 {
		if time.Now().After(deadline) {
			t.Fatal("handlers never finished after release")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := s.Progress().Stalled(now); err != nil {
		t.Errorf("after release: %v", err)
	}
}

// TestQueuedSeesWaitingDatagram checks the SIOCINQ probe on a socket nobody reads.
func TestQueuedSeesWaitingDatagram(t *testing.T) {
	uc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	if queued(uc) {
		t.Fatal("an empty socket reads as queued")
	}
	c, err := net.DialUDP("udp4", nil, uc.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("x"))
	deadline := time.Now().Add(5 * time.Second)
	for !queued(uc) {
		if time.Now().After(deadline) {
			t.Fatal("a waiting datagram never read as queued")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func waitRunning(t *testing.T, s *Server, n int64) Progress {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		p := s.Progress()
		if p.Running >= n {
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("progress %+v: never %d running", p, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
