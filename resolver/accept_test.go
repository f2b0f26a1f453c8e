package resolver

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/sys/unix"
)

// failingListener fails every Accept with EMFILE, as a full descriptor table does.
type failingListener struct {
	net.Listener
	calls int
}

func (l *failingListener) Accept() (net.Conn, error) {
	l.calls++
	return nil, &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
}

// TestPacedListener: a loop that retries temporary errors at once, as miekg/dns's does,
// makes a handful of accept calls a second through the pacer, not millions; Close ends a
// wait at once.
func TestPacedListener(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fl := &failingListener{Listener: inner}
	l := newPacedListener(fl, slog.New(slog.DiscardHandler))
	deadline := time.Now().Add(300 * time.Millisecond)
	for time.Now().Before(deadline) {
		_, err := l.Accept()
		if !errors.Is(err, syscall.EMFILE) { // the error goes back to miekg/dns's loop as it was
			t.Fatalf("accept: %v, want EMFILE", err)
		}
	}
	if fl.calls > 10 {
		t.Errorf("%d accept calls in 300 ms, want the pacer's handful (5 ms doubling)", fl.calls)
	}
	if l.fails.Load() != uint64(fl.calls) {
		t.Errorf("counted %d failures of %d", l.fails.Load(), fl.calls)
	}
	done := make(chan struct{})
	go func() { l.Accept(); close(done) }()
	time.Sleep(10 * time.Millisecond)
	l.Close()
	select {
	case <-done:
	case <-time.After(500 * time.Millisecond):
		t.Fatal("Close did not end a waiting Accept")
	}
}

// TestDNSTCPOutOfDescriptors is the faults catalog's case 19 on the DNS TCP listener: with
// the descriptor table full, the server neither spins nor stops; UDP answers go on; when
// descriptors come back, TCP answers again.
func TestDNSTCPOutOfDescriptors(t *testing.T) {
	s := startServer(t, Config{MaxTCPConns: -1})
	var old unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &old); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("LOUD SKIP: no /proc/self/fd: %v", err)
	}
	low := old
	low.Cur = uint64(len(ents) + 40)
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	// The UDP client's socket is made before the table fills.
	uc, err := net.Dial("udp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	var conns []net.Conn
	restore := func() {
		for _, c := range conns {
			c.Close()
		}
		conns = nil
		unix.Setrlimit(unix.RLIMIT_NOFILE, &old)
	}
	defer restore()
	// Fill the table: each connection takes a descriptor here, and one in the server once
	// accepted, until accept itself fails.
	for range 200 {
		c, err := net.DialTimeout("tcp", s.Addr().String(), time.Second)
		if err != nil {
			break
		}
		conns = append(conns, c)
	}
	time.Sleep(100 * time.Millisecond)
	if s.AcceptErrors() == 0 {
		t.Skip("LOUD SKIP: the descriptor table never filled (the dialer failed first)")
	}
	var before, after unix.Rusage
	unix.Getrusage(unix.RUSAGE_SELF, &before)
	time.Sleep(time.Second)
	unix.Getrusage(unix.RUSAGE_SELF, &after)
	cpu := time.Duration(after.Utime.Nano()+after.Stime.Nano()-before.Utime.Nano()-before.Stime.Nano()) * time.Nanosecond
	if cpu > 300*time.Millisecond {
		t.Errorf("%v of CPU in a second while out of descriptors: the accept loop spins", cpu)
	}
	dc := &dns.Conn{Conn: uc}
	dc.SetDeadline(time.Now().Add(5 * time.Second))
	if err := dc.WriteMsg(newReq("api.example.com.", dns.TypeA)); err != nil {
		t.Fatal(err)
	}
	if r, err := dc.ReadMsg(); err != nil || r.Rcode != dns.RcodeSuccess {
		t.Errorf("UDP while out of descriptors: %v, %v", r, err)
	}
	restore()
	// Recovery: the paced loop tries again within a second. Until the server has seen the
	// closed connections end, this client may still count as holding MaxTCPPerSource of them
	// and be reset: it asks again until a deadline, as a client would.
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := askTCPOnce(t, s.Addr())
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("TCP after descriptors came back: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("%d accepts failed; %v of CPU in the second out of descriptors", s.AcceptErrors(), cpu)
}

// askTCPOnce asks one question over a new TCP connection and reads the reply's length.
func askTCPOnce(t *testing.T, addr netip.AddrPort) error {
	c, err := net.Dial("tcp", addr.String())
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(frame(t, newReq("api.example.com.", dns.TypeA))); err != nil {
		return err
	}
	var n [2]byte
	_, err = io.ReadFull(c, n[:])
	return err
}
