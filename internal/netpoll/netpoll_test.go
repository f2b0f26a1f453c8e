package netpoll_test

import (
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/lnm-project/lnm/internal/netpoll"
)

// pair returns the two ends of a loopback TCP connection and the descriptor of the second.
func pair(tb testing.TB) (a, b *net.TCPConn, fd int) {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		tb.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close(); s.Close() })
	rc, err := s.(*net.TCPConn).SyscallConn()
	if err != nil {
		tb.Fatal(err)
	}
	rc.Control(func(d uintptr) { fd = int(d) })
	return c.(*net.TCPConn), s.(*net.TCPConn), fd
}

func poller(tb testing.TB) *netpoll.Poller {
	tb.Helper()
	p, err := netpoll.New()
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

// wait fails the test if ch does not receive within a generous deadline.
func wait(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(20 * time.Second):
		t.Fatalf("%s: no wake-up in 20s", what)
	}
}

// TestWakeOnData: a parked socket stays parked while silent and wakes once when bytes come;
// its bytes are still there to read.
func TestWakeOnData(t *testing.T) {
	p := poller(t)
	a, b, fd := pair(t)
	woke := make(chan struct{}, 2)
	if _, err := p.Park(fd, func() { woke <- struct{}{} }); err != nil {
		t.Fatal(err)
	}
	if p.Parked() != 1 {
		t.Fatalf("Parked() = %d, want 1", p.Parked())
	}
	select {
	case <-woke:
		t.Fatal("woke with nothing to read")
	default:
	}
	a.Write([]byte("hi"))
	wait(t, woke, "data")
	buf := make([]byte, 8)
	b.SetReadDeadline(time.Now().Add(20 * time.Second))
	if n, err := b.Read(buf); err != nil || string(buf[:n]) != "hi" {
		t.Fatalf("read %q, %v", buf[:n], err)
	}
	if p.Parked() != 0 {
		t.Fatalf("Parked() = %d after the wake, want 0", p.Parked())
	}
	// Parked again (a one-shot entry that fired is re-armed), it wakes again.
	if _, err := p.Park(fd, func() { woke <- struct{}{} }); err != nil {
		t.Fatal(err)
	}
	a.Write([]byte("again"))
	wait(t, woke, "second data")
}

// TestWakeOnCloseAndReset: EOF and a reset wake a parked socket as data does.
func TestWakeOnCloseAndReset(t *testing.T) {
	p := poller(t)
	for _, reset := range []bool{false, true} {
		a, b, fd := pair(t)
		woke := make(chan struct{}, 1)
		if _, err := p.Park(fd, func() { woke <- struct{}{} }); err != nil {
			t.Fatal(err)
		}
		if reset {
			a.SetLinger(0)
		}
		a.Close()
		wait(t, woke, map[bool]string{false: "EOF", true: "reset"}[reset])
		buf := make([]byte, 8)
		b.SetReadDeadline(time.Now().Add(20 * time.Second))
		_, err := b.Read(buf)
		if err == nil {
			t.Fatalf("reset=%v: read succeeded after the peer closed", reset)
		}
	}
}

// TestUnpark: a parking taken back never calls its callback; Unpark of a fired parking
// reports false.
func TestUnpark(t *testing.T) {
	p := poller(t)
	a, _, fd := pair(t)
	called := make(chan struct{}, 1)
	tok, err := p.Park(fd, func() { called <- struct{}{} })
	if err != nil {
		t.Fatal(err)
	}
	if !p.Unpark(tok) {
		t.Fatal("Unpark of a live parking reported false")
	}
	a.Write([]byte("x"))
	// Park a second socket and wake it: the poller has then looked at the set after the
	// write above, so a stray callback for the first would have come already.
	c, _, fd2 := pair(t)
	woke := make(chan struct{}, 1)
	if _, err := p.Park(fd2, func() { woke <- struct{}{} }); err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("y"))
	wait(t, woke, "second socket")
	select {
	case <-called:
		t.Fatal("an unparked socket's callback ran")
	default:
	}
	if p.Unpark(tok) {
		t.Fatal("second Unpark reported true")
	}
	tok2, err := p.Park(fd, func() { called <- struct{}{} })
	if err != nil {
		t.Fatal(err)
	}
	wait(t, called, "parked again with a byte queued")
	if p.Unpark(tok2) {
		t.Fatal("Unpark after the callback reported true")
	}
}

// TestParkBadFD: a descriptor epoll cannot take is an error, and nothing stays parked.
func TestParkBadFD(t *testing.T) {
	p := poller(t)
	if _, err := p.Park(-1, func() {}); err == nil {
		t.Fatal("Park(-1) succeeded")
	}
	if p.Parked() != 0 {
		t.Fatalf("Parked() = %d after a failed Park", p.Parked())
	}
	var fds [2]int
	if err := syscall.Pipe(fds[:]); err != nil {
		t.Fatal(err)
	}
	syscall.Close(fds[0])
	syscall.Close(fds[1])
	if _, err := p.Park(fds[0], func() {}); err == nil {
		t.Fatal("Park of a closed descriptor succeeded")
	}
}

// BenchmarkParkWake measures one park/unpark cycle of an idle stream: park the socket, a
// byte arrives, the poller hands it back, the byte is read.
func BenchmarkParkWake(b *testing.B) {
	p := poller(b)
	a, s, fd := pair(b)
	woke := make(chan struct{}, 1)
	fn := func() { woke <- struct{}{} }
	one, buf := []byte{1}, make([]byte, 1)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.Park(fd, fn); err != nil {
			b.Fatal(err)
		}
		a.Write(one)
		<-woke
		if _, err := s.Read(buf); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParkUnpark measures parking a silent socket and taking it back (a stream that
// parks and is then closed by a revoke or an idle timeout).
func BenchmarkParkUnpark(b *testing.B) {
	p := poller(b)
	_, _, fd := pair(b)
	fn := func() {}
	b.ReportAllocs()
	for b.Loop() {
		tok, err := p.Park(fd, fn)
		if err != nil {
			b.Fatal(err)
		}
		p.Unpark(tok)
	}
}
