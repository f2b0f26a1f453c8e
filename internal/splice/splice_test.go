package splice_test

import (
	"bytes"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/lnm-project/lnm/internal/netpoll"
	"github.com/lnm-project/lnm/internal/splice"
)

// pair returns the two ends of a loopback TCP connection.
func pair(tb testing.TB) (dialed, accepted *net.TCPConn) {
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
	return c.(*net.TCPConn), s.(*net.TCPConn)
}

// stream is a device connected through a Pipe to a server: device ↔ a =pipe= b ↔ server.
type stream struct {
	device, server *net.TCPConn
	pipe           *splice.Pipe
	end            chan splice.Result
	onEnd          func() // if set, runs in onEnd before the result is sent
}

func newStream(tb testing.TB, cfg splice.Config) *stream {
	tb.Helper()
	device, a := pair(tb)
	b, server := pair(tb)
	s := &stream{device: device, server: server, pipe: splice.New(a, b, cfg), end: make(chan splice.Result, 1)}
	s.pipe.Start(func(r splice.Result) {
		if s.onEnd != nil {
			s.onEnd()
		}
		s.end <- r
	})
	return s
}

func poller(tb testing.TB) *netpoll.Poller {
	tb.Helper()
	p, err := netpoll.New()
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

const patience = 30 * time.Second

func (s *stream) result(t *testing.T) splice.Result {
	t.Helper()
	select {
	case r := <-s.end:
		return r
	case <-time.After(patience):
		t.Fatal("the stream did not end")
	}
	return splice.Result{}
}

// exchange sends msg from → to through the pipe and checks it arrives whole.
func exchange(t *testing.T, from, to net.Conn, msg []byte) {
	t.Helper()
	go from.Write(msg)
	got := make([]byte, len(msg))
	to.SetReadDeadline(time.Now().Add(patience))
	if _, err := io.ReadFull(to, got); err != nil {
		t.Fatalf("read: %v", err)
	}
	if !bytes.Equal(got, msg) {
		t.Fatal("bytes changed on the way")
	}
}

// waitFor polls cond until it holds, failing after a generous deadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(patience); !cond(); {
		if time.Now().After(end) {
			t.Fatalf("%s: not within %v", what, patience)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestBytesAndHalfClose: small and large writes cross both ways and are counted; the
// device's FIN reaches the server while the server's answer still flows back; the stream
// ends when both sides are done, for no reason of its own.
func TestBytesAndHalfClose(t *testing.T) {
	for _, park := range []bool{false, true} {
		cfg := splice.Config{Idle: time.Hour}
		if park {
			cfg.Poller, cfg.ParkAfter = poller(t), time.Millisecond
		}
		s := newStream(t, cfg)
		small, big := []byte("hello"), bytes.Repeat([]byte("0123456789abcdef"), 256<<10) // 4 MiB
		exchange(t, s.device, s.server, small)
		exchange(t, s.server, s.device, small)
		exchange(t, s.device, s.server, big)
		if park {
			waitFor(t, "both directions parked", func() bool { return cfg.Poller.Parked() == 2 })
		}
		exchange(t, s.server, s.device, big)
		s.device.CloseWrite()
		s.server.SetReadDeadline(time.Now().Add(patience))
		if n, err := s.server.Read(make([]byte, 1)); err != io.EOF {
			t.Fatalf("park=%v: server read %d, %v after the device's FIN, want EOF", park, n, err)
		}
		exchange(t, s.server, s.device, []byte("still here"))
		s.server.Close()
		r := s.result(t)
		wantUp, wantDown := int64(len(small)+len(big)), int64(len(small)+len(big)+len("still here"))
		if r.Up != wantUp || r.Down != wantDown || r.Idle || r.Why != "" {
			t.Fatalf("park=%v: result %+v, want up %d down %d, not idle, no reason", park, r, wantUp, wantDown)
		}
	}
}

// TestIdleTimeout: a stream with no byte either way ends as idle, parked or not; one that
// keeps moving one way is not idle.
func TestIdleTimeout(t *testing.T) {
	for _, park := range []bool{false, true} {
		// Idle is generous so that a loaded machine's stall between two pings does not make
		// the busy stream look idle.
		cfg := splice.Config{Idle: 1500 * time.Millisecond}
		if park {
			cfg.Poller, cfg.ParkAfter = poller(t), 10*time.Millisecond
		}
		s := newStream(t, cfg)
		exchange(t, s.device, s.server, []byte("x"))
		// One way busy: two idle periods of pings, and the stream stays.
		for range 30 {
			exchange(t, s.device, s.server, []byte("ping"))
			time.Sleep(100 * time.Millisecond) // pacing the pings, not synchronisation
		}
		select {
		case r := <-s.end:
			t.Fatalf("park=%v: a stream busy one way ended: %+v", park, r)
		default:
		}
		r := s.result(t)
		if !r.Idle || r.Up != 121 || r.Down != 0 {
			t.Fatalf("park=%v: result %+v, want idle with 121 bytes up", park, r)
		}
		s.device.SetReadDeadline(time.Now().Add(patience))
		if _, err := s.device.Read(make([]byte, 1)); err == nil {
			t.Fatalf("park=%v: the device's connection is still open after the idle end", park)
		}
	}
}

// TestCloseWhileParked: Close of a parked stream (a revoke) ends it at once with its reason,
// and both peers see their connection closed.
func TestCloseWhileParked(t *testing.T) {
	cfg := splice.Config{Idle: time.Hour, Poller: poller(t), ParkAfter: time.Millisecond}
	s := newStream(t, cfg)
	exchange(t, s.device, s.server, []byte("up"))
	exchange(t, s.server, s.device, []byte("down!"))
	waitFor(t, "both directions parked", func() bool { return cfg.Poller.Parked() == 2 })
	// The caller of Close may hold a lock that onEnd takes (the forwarder does): onEnd must
	// not run on Close's goroutine.
	var mu sync.Mutex
	ended := false
	s.onEnd = func() { mu.Lock(); ended = true; mu.Unlock() }
	mu.Lock()
	s.pipe.Close("revoked")
	mu.Unlock()
	r := s.result(t)
	mu.Lock()
	if !ended {
		t.Error("onEnd did not run")
	}
	mu.Unlock()
	if r.Why != "revoked" || r.Idle || r.Up != 2 || r.Down != 5 {
		t.Fatalf("result %+v, want revoked, 2 up, 5 down", r)
	}
	if cfg.Poller.Parked() != 0 {
		t.Fatalf("%d descriptors still parked after Close", cfg.Poller.Parked())
	}
	for _, c := range []net.Conn{s.device, s.server} {
		c.SetReadDeadline(time.Now().Add(patience))
		if _, err := c.Read(make([]byte, 1)); err == nil {
			t.Fatal("a peer's connection is still open after Close")
		}
	}
	s.pipe.Close("again") // a second Close changes nothing
}

// TestCloseWhileRunning: Close while a direction waits in its goroutine (no poller).
func TestCloseWhileRunning(t *testing.T) {
	s := newStream(t, splice.Config{Idle: time.Hour})
	exchange(t, s.device, s.server, []byte("up"))
	s.pipe.Close("shutdown")
	if r := s.result(t); r.Why != "shutdown" || r.Up != 2 {
		t.Fatalf("result %+v, want shutdown with 2 up", r)
	}
}

// TestResetWhileParked: a peer's reset wakes the parked direction and ends the stream.
func TestResetWhileParked(t *testing.T) {
	cfg := splice.Config{Idle: time.Hour, Poller: poller(t), ParkAfter: time.Millisecond}
	s := newStream(t, cfg)
	waitFor(t, "both directions parked", func() bool { return cfg.Poller.Parked() == 2 })
	s.server.SetLinger(0)
	s.server.Close()
	if r := s.result(t); r.Idle || r.Why != "" {
		t.Fatalf("result %+v, want an end of its own", r)
	}
}

// TestNotSockets: streams that are not sockets (net.Pipe) never park, and still work.
func TestNotSockets(t *testing.T) {
	device, a := net.Pipe()
	b, server := net.Pipe()
	p := splice.New(a, b, splice.Config{Idle: time.Hour, Poller: poller(t), ParkAfter: time.Millisecond})
	end := make(chan splice.Result, 1)
	p.Start(func(r splice.Result) { end <- r })
	exchange(t, device, server, []byte("pipe"))
	exchange(t, server, device, []byte("back"))
	device.Close()
	select {
	case r := <-end:
		if r.Up != 4 || r.Down != 4 {
			t.Fatalf("result %+v, want 4 each way", r)
		}
	case <-time.After(patience):
		t.Fatal("the stream did not end")
	}
}

// BenchmarkPipeBulk measures bytes through a Pipe one way in 256 KiB writes (the kernel
// path), with allocations per write.
func BenchmarkPipeBulk(b *testing.B) {
	benchPipe(b, 256<<10)
}

// BenchmarkPipeSmall measures 1 KiB messages through a Pipe (the pooled-buffer path).
func BenchmarkPipeSmall(b *testing.B) {
	benchPipe(b, 1<<10)
}

func benchPipe(b *testing.B, size int) {
	device, a := pair(b)
	bc, server := pair(b)
	p := splice.New(a, bc, splice.Config{Idle: time.Hour, Poller: poller(b)})
	p.Start(nil)
	defer p.Close("")
	go io.Copy(io.Discard, server)
	msg := make([]byte, size)
	b.SetBytes(int64(size))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := device.Write(msg); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParkedEcho measures the park/unpark cycle of a whole stream: both directions are
// parked, a device's message wakes one, the server's answer wakes the other, and both park
// again.
func BenchmarkParkedEcho(b *testing.B) {
	pl := poller(b)
	device, a := pair(b)
	bc, server := pair(b)
	p := splice.New(a, bc, splice.Config{Idle: time.Hour, Poller: pl, ParkAfter: time.Nanosecond})
	p.Start(nil)
	defer p.Close("")
	msg, buf := []byte("ping"), make([]byte, 4)
	b.ReportAllocs()
	for b.Loop() {
		for pl.Parked() != 2 {
			time.Sleep(10 * time.Microsecond)
		}
		device.Write(msg)
		io.ReadFull(server, buf)
		server.Write(msg)
		io.ReadFull(device, buf)
	}
}
