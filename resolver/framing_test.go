package resolver

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// TestTCPFramingEdges is the faults catalog's case 31 with hand-written bytes: a length of
// zero, a length promising more than arrives before FIN, and a message of the largest size
// the framing can carry. The first two end their connection without an answer and without
// holding it open; the third is answered; the server answers the next client every time.
func TestTCPFramingEdges(t *testing.T) {
	s := startServer(t, Config{})
	stillServes := func(t *testing.T) {
		t.Helper()
		c := dialTCP(t, s)
		c.Write(frame(t, newReq("api.example.com.", dns.TypeA)))
		if m := readTCPMsg(t, bufio.NewReader(c)); m.Rcode != dns.RcodeSuccess || len(m.Answer) != 1 {
			t.Fatalf("the next client: %v", m)
		}
	}
	// closedSoon reads until the server closes; it must not answer, and must not wait for the
	// connection's idle timer to do it.
	closedSoon := func(t *testing.T, c net.Conn) {
		t.Helper()
		c.SetReadDeadline(time.Now().Add(3 * time.Second)) // below the 5 s first-message timer
		n, err := c.Read(make([]byte, 512))
		if errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatal("the server held the connection open")
		}
		if n != 0 || (err != io.EOF && !errors.Is(err, net.ErrClosed) && !isReset(err)) {
			t.Fatalf("read %d bytes, %v; want the connection closed without an answer", n, err)
		}
	}
	t.Run("length zero", func(t *testing.T) {
		c := dialTCP(t, s)
		c.Write([]byte{0, 0})
		closedSoon(t, c)
		stillServes(t)
	})
	t.Run("short then FIN", func(t *testing.T) {
		c := dialTCP(t, s)
		b := frame(t, newReq("api.example.com.", dns.TypeA))
		c.Write(b[:len(b)-5])
		c.(*net.TCPConn).CloseWrite()
		closedSoon(t, c)
		stillServes(t)
	})
	t.Run("65535 bytes", func(t *testing.T) {
		req := newReq("api.example.com.", dns.TypeA)
		opt := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
		opt.SetUDPSize(1232)
		req.Extra = append(req.Extra, opt)
		base, err := req.Pack()
		if err != nil {
			t.Fatal(err)
		}
		opt.Option = append(opt.Option, &dns.EDNS0_PADDING{Padding: make([]byte, 65535-len(base)-4)})
		wire, err := req.Pack()
		if err != nil || len(wire) != 65535 {
			t.Fatalf("built a %d-byte message (%v), want 65535", len(wire), err)
		}
		c := dialTCP(t, s)
		c.Write(binary.BigEndian.AppendUint16(nil, uint16(len(wire))))
		c.Write(wire)
		if m := readTCPMsg(t, bufio.NewReader(c)); m.Rcode != dns.RcodeSuccess || len(m.Answer) != 1 {
			t.Fatalf("a 65,535-byte query: %v", m)
		}
	})
}

func isReset(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "read"
}
