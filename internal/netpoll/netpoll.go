// Package netpoll parks idle sockets: a stream with no traffic gives up its goroutine and its
// buffer, and its descriptor waits in one epoll set until the kernel says it is readable (or
// hung up, or in error); then the descriptor's callback runs once on a goroutine of its own.
//
// The Go runtime's own poller cannot do this: it wakes a goroutine that is blocked in Read,
// and a blocked goroutine keeps its stack (kilobytes) for as long as the stream is silent,
// which for MQTT and HTTPS devices is hours. A descriptor may sit in several epoll sets at
// once, so parking here does not disturb the runtime's registration, and the stream goes back
// to ordinary net.Conn reads and writes when it wakes.
package netpoll

import (
	"errors"
	"fmt"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// Token names one parking, so that a wake-up for a descriptor number that was closed and
// reused meanwhile is never handed to the new owner. The zero Token is never issued.
type Token uint64

// Poller holds parked descriptors in one epoll set and runs one goroutine that waits on it.
// The zero Poller is not usable; use New or Shared.
type Poller struct {
	epfd int

	mu      sync.Mutex
	next    Token
	waiters map[Token]waiter
}

type waiter struct {
	fd int
	fn func()
}

// events a parked descriptor waits for: readable, or the peer closed or reset it. EPOLLHUP
// and EPOLLERR are always reported. EPOLLONESHOT: one wake per parking.
const events = unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT

// New creates a poller and starts its goroutine, which lives as long as the process (an
// appliance parks streams for its whole life; tests share Shared).
func New() (*Poller, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	p := &Poller{epfd: epfd, waiters: map[Token]waiter{}}
	go p.loop()
	return p, nil
}

var shared struct {
	once sync.Once
	p    *Poller
	err  error
}

// Shared returns the process's poller, created on first use.
func Shared() (*Poller, error) {
	shared.once.Do(func() { shared.p, shared.err = New() })
	return shared.p, shared.err
}

// Park waits for fd to become readable, reach EOF or fail, and then calls fn once, on a new
// goroutine, unless Unpark took the parking back first. fd must be a non-blocking socket
// that stays open until the callback ran or Unpark returned true; the caller must not read it
// meanwhile.
func (p *Poller) Park(fd int, fn func()) (Token, error) {
	p.mu.Lock()
	p.next++
	tok := p.next
	p.waiters[tok] = waiter{fd: fd, fn: fn}
	p.mu.Unlock()
	ev := unix.EpollEvent{Events: events}
	setToken(&ev, tok)
	err := unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, fd, &ev)
	if errors.Is(err, unix.EEXIST) {
		// Parked before and woken: a fired one-shot entry stays in the set, disabled.
		err = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_MOD, fd, &ev)
	}
	if err != nil {
		p.mu.Lock()
		delete(p.waiters, tok)
		p.mu.Unlock()
		return 0, os.NewSyscallError("epoll_ctl", fmt.Errorf("park fd %d: %w", fd, err))
	}
	return tok, nil
}

// Unpark takes back a parking before fd is closed. It reports whether it did: false means
// the callback has run or is about to, and the caller must let it.
func (p *Poller) Unpark(tok Token) bool {
	p.mu.Lock()
	w, ok := p.waiters[tok]
	delete(p.waiters, tok)
	p.mu.Unlock()
	if ok {
		// Best effort: closing the descriptor removes it from the set anyway.
		unix.EpollCtl(p.epfd, unix.EPOLL_CTL_DEL, w.fd, nil)
	}
	return ok
}

// Parked is how many descriptors are parked now.
func (p *Poller) Parked() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.waiters)
}

// loop waits on the epoll set and hands each ready descriptor back to its owner.
func (p *Poller) loop() {
	evs := make([]unix.EpollEvent, 128)
	for {
		n, err := unix.EpollWait(p.epfd, evs, -1)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			panic(fmt.Sprintf("netpoll: epoll_wait: %v", err)) // EBADF, EINVAL: a bug here
		}
		p.mu.Lock()
		for i := range n {
			tok := token(&evs[i])
			if w, ok := p.waiters[tok]; ok {
				delete(p.waiters, tok)
				go w.fn()
			}
		}
		p.mu.Unlock()
	}
}

// The token travels in the event's 64-bit data field (Fd and Pad in x/sys/unix's layout).
func setToken(ev *unix.EpollEvent, t Token) {
	ev.Fd = int32(uint32(t))
	ev.Pad = int32(uint32(t >> 32))
}

func token(ev *unix.EpollEvent) Token {
	return Token(uint32(ev.Fd)) | Token(uint32(ev.Pad))<<32
}
