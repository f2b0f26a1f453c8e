// Package splice moves the bytes of one forwarded stream both ways until it ends, and makes
// an idle stream cheap: after ParkAfter with nothing to read, a direction gives up its
// goroutine and waits in a netpoll.Poller, holding no buffer, no pipe and no stack. Thousands
// of devices keep MQTT and HTTPS connections open for hours and send a few bytes a minute;
// each of them costs its two sockets and a few hundred bytes of bookkeeping.
//
// A readable direction reads once into a pooled buffer of one TLS record and writes that on
// (one syscall each way, the usual case of small messages); once a read fills the buffer,
// the direction copies what is queued through the kernel instead (splice(2), via io.CopyN
// into a *net.TCPConn, with a pipe from the runtime's pool only for the length of the call)
// until less than a buffer is queued.
//
// What the forwarder's audit record needs is kept: the bytes moved each way, the idle
// timeout (no byte in either direction for a whole period, checked per direction), the
// half-close (EOF one way shuts down the other side's write and the other direction goes on),
// and Close with a reason (revoke, shutdown) at any time, parked or not.
package splice

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/lnm-project/lnm/internal/netpoll"
	"golang.org/x/sys/unix"
)

// DefaultParkAfter is how long a direction waits with nothing to read, goroutine and all,
// before it parks: long enough that a request/response exchange does not park between its
// halves, short enough that idle streams give their goroutines back quickly.
const DefaultParkAfter = 250 * time.Millisecond

// chunk is the most one kernel copy may move before the idle clock is checked again.
const chunk = 1 << 20

// bufSize holds one full TLS record (16 KiB of plaintext and its overhead).
const bufSize = 16<<10 + 512

var bufs = sync.Pool{New: func() any { b := make([]byte, bufSize); return &b }}

// Config says how a Pipe waits.
type Config struct {
	// Idle ends the stream after this long with no byte in either direction (each direction
	// counts its own periods, so a silent stream ends between one and two periods after its
	// last byte). It must be positive.
	Idle time.Duration
	// Poller parks idle directions. Nil: a direction waits in its goroutine, as a plain
	// blocking copy does (and streams that are not sockets always do).
	Poller *netpoll.Poller
	// ParkAfter is the quiet time after which a direction parks. Zero: DefaultParkAfter.
	ParkAfter time.Duration
}

// Result is how a stream ended.
type Result struct {
	Up, Down int64 // bytes moved a → b and b → a
	// Idle is true when the stream ended because it was idle for Config.Idle.
	Idle bool
	// Why is the reason given to the first Close that ended the stream; "" when it ended by
	// itself (both sides finished, one failed, or Idle).
	Why string
}

// Directions.
const (
	up   = 0 // a → b
	down = 1 // b → a
)

// Direction states, under Pipe.mu.
const (
	running = iota // a goroutine copies (or is about to)
	parked         // waiting in the poller, with its idle timer
	done           // finished: EOF, an error, or closed while parked
)

// A Pipe is one stream between a and b. Create it with New and start it with Start or Run.
type Pipe struct {
	a, b      net.Conn
	idle      time.Duration
	parkAfter time.Duration
	poller    *netpoll.Poller
	dirs      [2]dir
	onEnd     func(Result)

	mu       sync.Mutex
	quiet    [2]bool // direction had no byte in its last full idle period, or is done
	finished int     // directions done
	closed   bool
	idleEnd  bool
	why      string
}

// dir is one direction of a Pipe: src is read, dst written.
type dir struct {
	p        *Pipe
	n        int // up or down
	src, dst net.Conn
	rc       syscall.RawConn // src's descriptor access; nil when src is not a socket
	fd       int             // src's descriptor; -1: never parks
	total    int64           // bytes moved; only the running goroutine touches it
	bulk     bool            // the last read filled a buffer: copy through the kernel

	// Under p.mu.
	state int
	since time.Time // start of the current quiet period: the last byte, or a counted period
	timer *time.Timer
	tok   netpoll.Token
}

// New returns a Pipe between a and b, not started.
func New(a, b net.Conn, cfg Config) *Pipe {
	p := &Pipe{a: a, b: b, idle: cfg.Idle, poller: cfg.Poller, parkAfter: cfg.ParkAfter}
	if p.parkAfter <= 0 {
		p.parkAfter = DefaultParkAfter
	}
	if p.parkAfter >= p.idle {
		p.poller = nil // the idle timeout comes first; parking would save nothing
	}
	p.dirs[up] = dir{p: p, n: up, src: a, dst: b, fd: -1}
	p.dirs[down] = dir{p: p, n: down, src: b, dst: a, fd: -1}
	for i := range p.dirs {
		d := &p.dirs[i]
		d.rc = rawConn(d.src)
		if d.rc != nil && p.poller != nil {
			d.rc.Control(func(fd uintptr) { d.fd = int(fd) })
		}
	}
	return p
}

// Start copies both ways on goroutines of their own and returns at once; onEnd runs once,
// on one of them, when both directions are done and both connections closed.
func (p *Pipe) Start(onEnd func(Result)) {
	p.onEnd = onEnd
	now := time.Now()
	p.mu.Lock()
	p.dirs[up].since, p.dirs[down].since = now, now
	p.mu.Unlock()
	go p.dirs[up].copyAToB()
	go p.dirs[down].copyBToA()
}

// Run is Start and a wait for the end.
func (p *Pipe) Run() Result {
	ch := make(chan Result, 1)
	p.Start(func(r Result) { ch <- r })
	return <-ch
}

// Close ends the stream: both connections are closed and why is kept as the reason, unless
// the stream has already ended. Safe at any time and from any goroutine; onEnd never runs
// on the goroutine that calls Close, so the caller may hold a lock that onEnd takes.
func (p *Pipe) Close(why string) {
	p.close(why, false)
}

func (p *Pipe) close(why string, idle bool) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed, p.why, p.idleEnd = true, why, idle
	var woke [2]bool
	for i := range p.dirs {
		d := &p.dirs[i]
		if d.state == parked && p.poller.Unpark(d.tok) {
			// Taken back before its wake-up: nobody runs it, finish it here. (Otherwise the
			// wake-up is on its way; it finds the connection closed and finishes.)
			d.state = done
			d.timer.Stop()
			woke[i] = true
		}
	}
	p.mu.Unlock()
	p.a.Close()
	p.b.Close()
	for i, w := range woke {
		if w {
			// Not on the caller's goroutine: onEnd may take a lock the caller holds (a
			// forwarder aborts its streams under its own lock, and onEnd forgets them).
			go p.dirs[i].finish()
		}
	}
}

// The two named copy functions make goroutine dumps readable.
func (d *dir) copyAToB() { d.run(false) }
func (d *dir) copyBToA() { d.run(false) }

// run copies until the direction parks or is done. woken: the poller has just said the
// socket is readable, so the first wait is not cut short to park again (a parking deadline
// already past would fail the read before it looked, and park, wake and park forever).
func (d *dir) run(woken bool) {
	p := d.p
	for {
		p.mu.Lock()
		deadline := d.since.Add(p.idle)
		p.mu.Unlock()
		now := time.Now()
		parking := false
		if d.fd >= 0 && !woken {
			if at := now.Add(p.parkAfter); at.Before(deadline) {
				deadline, parking = at, true
			}
		}
		d.src.SetReadDeadline(deadline)
		n, err := d.copyQueued()
		d.total += n
		woken = false
		if n > 0 {
			p.mu.Lock()
			d.since = time.Now()
			p.quiet[d.n] = false
			p.mu.Unlock()
		}
		switch {
		case err == nil:
			continue
		case errors.Is(err, os.ErrDeadlineExceeded):
			if n > 0 {
				continue
			}
			if parking {
				if d.park() {
					return
				}
				continue
			}
			if !d.periodQuiet() {
				continue // the other direction is still moving
			}
			p.close("", true)
			d.finish()
			return
		case err == io.EOF:
			// Propagate the half-close and keep the other direction flowing.
			if hc, ok := d.dst.(interface{ CloseWrite() error }); ok && hc.CloseWrite() == nil {
				d.finish()
				return
			}
		}
		p.close("", false)
		d.finish()
		return
	}
}

// periodQuiet counts a full idle period with no byte: it reports whether both directions
// are now quiet (the stream is idle), else starts the next period.
func (d *dir) periodQuiet() bool {
	p := d.p
	p.mu.Lock()
	defer p.mu.Unlock()
	p.quiet[d.n] = true
	if p.quiet[up] && p.quiet[down] {
		return true
	}
	d.since = time.Now()
	return false
}

// park hands the direction to the poller, with a timer for the rest of its idle period. It
// reports false when the direction must go on copying instead (the poller refused it, or
// the stream is closing).
func (d *dir) park() bool {
	p := d.p
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false // the next read fails on the closed connection and finishes
	}
	tok, err := p.poller.Park(d.fd, d.wake)
	if err != nil {
		d.fd = -1 // wait the plain way from now on
		return false
	}
	d.state, d.tok = parked, tok
	rest := time.Until(d.since.Add(p.idle))
	if d.timer == nil {
		d.timer = time.AfterFunc(rest, d.expire)
	} else {
		d.timer.Reset(rest)
	}
	return true
}

// wake runs when the poller hands a parked direction back: bytes, EOF or an error wait.
func (d *dir) wake() {
	p := d.p
	p.mu.Lock()
	if d.state != parked {
		p.mu.Unlock()
		return
	}
	d.state = running
	d.timer.Stop()
	p.mu.Unlock()
	d.run(true)
}

// expire runs when a parked direction's idle period has passed with no byte.
func (d *dir) expire() {
	p := d.p
	p.mu.Lock()
	if d.state != parked {
		p.mu.Unlock()
		return
	}
	p.quiet[d.n] = true
	if !p.quiet[up] || !p.quiet[down] {
		d.since = time.Now()
		d.timer.Reset(p.idle)
		p.mu.Unlock()
		return
	}
	if !p.poller.Unpark(d.tok) {
		// Bytes came as the period ended; the wake-up is on its way and carries on.
		p.mu.Unlock()
		return
	}
	d.state = done
	p.mu.Unlock()
	p.close("", true)
	d.finish()
}

// finish marks the direction done; the second to finish ends the stream. A finished
// direction counts as quiet for the other's idle check.
func (d *dir) finish() {
	p := d.p
	p.mu.Lock()
	d.state = done
	p.quiet[d.n] = true
	p.finished++
	last := p.finished == 2
	p.mu.Unlock()
	if !last {
		return
	}
	p.close("", false)
	p.mu.Lock()
	r := Result{Up: p.dirs[up].total, Down: p.dirs[down].total, Idle: p.idleEnd, Why: p.why}
	p.mu.Unlock()
	if p.onEnd != nil {
		p.onEnd(r)
	}
}

// copyQueued waits for src to have bytes and copies some: what one read into a pooled
// buffer takes (one syscall; the buffer is taken only once the socket is readable), or,
// while a direction is moving bulk (its last read filled the buffer), what is queued,
// through the kernel, at most chunk. An error is the wait's (a deadline, a closed conn) or
// the copy's; io.EOF when src has finished.
func (d *dir) copyQueued() (int64, error) {
	n := int64(chunk)
	if d.rc != nil {
		if !d.bulk {
			return d.copyBuffered()
		}
		queued, err := awaitData(d.rc)
		if err != nil {
			return 0, err
		}
		if queued < bufSize {
			d.bulk = false // back to the buffer from the next copy on
		}
		if queued > 0 {
			n = min(int64(queued), chunk)
		}
		// queued 0: EOF or an error is pending, which the copy reports.
	}
	// io.CopyN hands dst.ReadFrom an *io.LimitedReader over src; *net.TCPConn recognizes
	// that shape and splices in the kernel.
	return io.CopyN(d.dst, d.src, n)
}

// copyBuffered waits (within src's read deadline) until src is readable, reads what is
// queued into a pooled buffer and writes it to dst. The buffer is held only from the read
// that returned bytes to the end of the write.
func (d *dir) copyBuffered() (int64, error) {
	var (
		bp      *[]byte
		n       int
		readErr error
	)
	err := d.rc.Read(func(fd uintptr) bool {
		bp = bufs.Get().(*[]byte)
		var err error
		n, err = unix.Read(int(fd), *bp)
		if errors.Is(err, unix.EAGAIN) {
			bufs.Put(bp)
			bp = nil
			return false // wait for readability
		}
		if err != nil {
			n, readErr = 0, os.NewSyscallError("read", err)
		}
		return true
	})
	if bp != nil {
		defer bufs.Put(bp)
	}
	switch {
	case err != nil:
		return 0, err
	case readErr != nil:
		return 0, readErr
	case n == 0:
		return 0, io.EOF
	}
	d.bulk = n == len(*bp)
	w, err := d.dst.Write((*bp)[:n])
	return int64(w), err
}

// rawConn returns c's descriptor access when c is a socket (a *net.TCPConn), else nil: such
// streams are copied the plain way.
func rawConn(c net.Conn) syscall.RawConn {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return rc
}
