package forwarder

import (
	"context"
	"errors"
	"net"
	"os"
	"time"
)

// maxEarly bounds what a client may send between its hello and the upstream's answer that
// the box keeps for the upstream; past it, the box stops reading until the splice starts.
const maxEarly = 16 << 10

// clientWatch reads a client while its stream waits for the upstream (resolve and dial), for
// two reasons. A client that gives up (closes, or resets) cancels the wait at once, instead
// of holding its socket and a dial for up to DialTimeout; its stream is denied with
// ReasonClientClosed, one record. And bytes a client sends early (TLS 1.3 early data, a
// change_cipher_spec right after the hello) are kept, to follow the hello upstream in order.
//
// On a proxy port the hello was a TLS ClientHello, and no TLS client closes its side before
// the server has answered (it could never finish the handshake), so EOF here means gone.
type clientWatch struct {
	c      net.Conn
	cancel context.CancelFunc
	done   chan struct{}
	early  []byte // what the client sent meanwhile
	left   error  // why the client is gone; nil while it is there
}

// watchClient starts watching c; cancel is called if the client leaves.
func watchClient(c net.Conn, cancel context.CancelFunc) *clientWatch {
	w := &clientWatch{c: c, cancel: cancel, done: make(chan struct{})}
	go w.run()
	return w
}

func (w *clientWatch) run() {
	defer close(w.done)
	buf := make([]byte, 2048)
	for len(w.early) < maxEarly {
		n, err := w.c.Read(buf[:min(len(buf), maxEarly-len(w.early))])
		w.early = append(w.early, buf[:n]...)
		if err != nil {
			if !errors.Is(err, os.ErrDeadlineExceeded) { // not stop's doing: the client left
				w.left = err
				w.cancel()
			}
			return
		}
	}
}

// stop ends the watch. It returns what the client sent meanwhile, and why it left if it did.
func (w *clientWatch) stop() ([]byte, error) {
	w.c.SetReadDeadline(time.Unix(1, 0)) // wakes the read
	<-w.done
	w.c.SetReadDeadline(time.Time{})
	return w.early, w.left
}
