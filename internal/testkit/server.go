package testkit

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"testing"
)

// Server runs a handler for every connection its listener accepts, until the test ends. Its
// cleanup closes the listener and every open connection and waits for the handlers, so a
// leak check that runs after it finds none of its goroutines.
type Server struct {
	ln net.Listener
	wg sync.WaitGroup

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

// Serve listens for TCP on addr ("127.0.0.1:0", or "127.0.0.2:0" for a second loopback
// host) and runs handle for each connection, which it closes when handle returns.
func Serve(t testing.TB, addr string, handle func(net.Conn)) *Server {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	return serve(t, ln, handle)
}

// ServeTLS is Serve with TLS: handle gets the server side of a connection whose handshake
// has not run yet.
func ServeTLS(t testing.TB, addr string, cfg *tls.Config, handle func(*tls.Conn)) *Server {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	return serve(t, tls.NewListener(ln, cfg), func(c net.Conn) { handle(c.(*tls.Conn)) })
}

func serve(t testing.TB, ln net.Listener, handle func(net.Conn)) *Server {
	s := &Server{ln: ln, conns: map[net.Conn]struct{}{}}
	s.wg.Add(1)
	go s.accept(handle)
	t.Cleanup(s.Close)
	return s
}

func (s *Server) accept(handle func(net.Conn)) {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			defer s.drop(c)
			handle(c)
		}()
	}
}

func (s *Server) drop(c net.Conn) {
	c.Close()
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// Close stops accepting, closes every open connection and waits for the handlers. The
// test's cleanup calls it; calling it earlier (a backend going down) is fine.
func (s *Server) Close() {
	s.ln.Close()
	s.mu.Lock()
	s.closed = true
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// Addr is the address the server listens on.
func (s *Server) Addr() netip.AddrPort { return s.ln.Addr().(*net.TCPAddr).AddrPort() }

// Port is the port the server listens on.
func (s *Server) Port() uint16 { return s.Addr().Port() }

// Echo is a TLS server that answers every read with the server name the client asked for,
// a colon and the bytes read ("api.example.test:hello"): through a proxy, the reply shows
// which name reached it. It records the server names of all handshakes, failed ones too.
type Echo struct {
	*Server
	mu   sync.Mutex
	snis []string
}

// TLSEcho starts an Echo on addr that presents cert.
func TLSEcho(t testing.TB, addr string, cert tls.Certificate) *Echo {
	t.Helper()
	e := &Echo{}
	cfg := &tls.Config{
		Certificates: []tls.Certificate{cert},
		GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
			e.mu.Lock()
			e.snis = append(e.snis, h.ServerName)
			e.mu.Unlock()
			return nil, nil
		},
	}
	e.Server = ServeTLS(t, addr, cfg, echoNamed)
	return e
}

// echoNamed is an Echo's handler, until the client closes or the test ends.
func echoNamed(c *tls.Conn) {
	if err := c.Handshake(); err != nil {
		return
	}
	name := c.ConnectionState().ServerName
	buf := make([]byte, 64<<10)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if _, werr := fmt.Fprintf(c, "%s:%s", name, buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// Seen is the server names of the handshakes so far, in order.
func (e *Echo) Seen() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.snis...)
}
