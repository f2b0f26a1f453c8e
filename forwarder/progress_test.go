package forwarder

import (
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/lnm-project/lnm/internal/testkit"
)

func TestProgressStalled(t *testing.T) {
	cases := []struct {
		name      string
		prev, now Progress
		want      string // substring of the error; "" for none
	}{
		{"idle", Progress{}, Progress{}, ""},
		{"idle after work", Progress{Accepts: 7}, Progress{Accepts: 7}, ""},
		{"busy and taking", Progress{Accepts: 7, Backlog: 3}, Progress{Accepts: 9, Backlog: 3}, ""},
		{"queue drained", Progress{Accepts: 7, Backlog: 3}, Progress{Accepts: 7}, ""},
		{"queue filled since", Progress{Accepts: 7}, Progress{Accepts: 7, Backlog: 2}, ""},
		{"wedged", Progress{Accepts: 7, Backlog: 1}, Progress{Accepts: 7, Backlog: 4}, "no accept loop took one"},
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

// TestProgressSeesWedgedAcceptLoop wedges the accept loop for real (it needs f.mu after each
// accept, as it would behind a deadlock) and checks that Progress sees the queue grow while
// nothing is taken, and that it answers without the lock.
func TestProgressSeesWedgedAcceptLoop(t *testing.T) {
	testkit.NoLeaks(t)
	port := testkit.FreePort(t)
	f, err := New(Config{Listen: netip.MustParseAddr("127.0.0.1"), Ports: []PortMap{{Listen: port}}, HelloTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Start(); err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	addr := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port).String()

	idle := f.Progress()
	if err := f.Progress().Stalled(idle); err != nil {
		t.Fatalf("idle forwarder: %v", err)
	}

	f.mu.Lock()
	var conns []net.Conn
	for range 3 { // the first is taken by the loop, which then waits for f.mu
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			f.mu.Unlock()
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	// Wait until the loop has taken the first (and so waits for f.mu) and two wait in the
	// queue: before that, the loop may still take one during the interval below.
	prev := waitProgress(t, f, func(p Progress) bool { return p.Accepts > idle.Accepts && p.Backlog >= 2 })
	time.Sleep(50 * time.Millisecond)
	err = f.Progress().Stalled(prev)
	f.mu.Unlock()
	if err == nil || !strings.Contains(err.Error(), "no accept loop took one") {
		t.Errorf("wedged accept loop: Stalled = %v", err)
	}

	// Released, the loop drains the queue and the forwarder is live again. The queue empties
	// when accept(2) returns, the count moves after: wait for both.
	after := waitProgress(t, f, func(p Progress) bool { return p.Backlog == 0 && p.Accepts >= prev.Accepts+2 })
	if err := f.Progress().Stalled(after); err != nil {
		t.Errorf("after release: %v", err)
	}
	for _, c := range conns {
		c.Close()
	}
}

func waitProgress(t *testing.T, f *Forwarder, ok func(Progress) bool) Progress {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		p := f.Progress()
		if ok(p) {
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("progress %+v never reached the condition", p)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
