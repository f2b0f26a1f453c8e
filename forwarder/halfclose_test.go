package forwarder_test

import (
	"crypto/tls"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/lnm-project/lnm/forwarder"
	"github.com/lnm-project/lnm/internal/testkit"
)

// The faults catalog's case 17: the server ends the stream first. A server that answers and
// closes (a FIN after its last byte) leaves the device all of the answer and then EOF; one
// that vanishes (a reset) while the device is silent ends the stream at once, not after the
// idle timeout. Either way the close record counts the bytes and names the end.
func TestServerEndsFirst(t *testing.T) {
	ca := testkit.NewCA(t)
	cert := ca.Issue(t, "a.example.test")
	for _, tc := range []struct {
		name   string
		handle func(*tls.Conn)
		want   string // what the device reads before the end
	}{
		{"answers then FIN", func(c *tls.Conn) { // the device reads it all, then closes

			c.Handshake()
			io.WriteString(c, strings.Repeat("z", 100_000))
			c.CloseWrite()
			io.Copy(io.Discard, c) // the device's side may still come
		}, strings.Repeat("z", 100_000)},
		{"vanishes", func(c *tls.Conn) {
			c.Handshake()
			io.WriteString(c, "bye")
			c.NetConn().(*net.TCPConn).SetLinger(0) // close with a reset, as a crashed server does
		}, "bye"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			be := testkit.ServeTLS(t, "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}}, tc.handle)
			s := start(t, forwarder.Config{List: rules(t, "a.example.test"), Parent: netip.MustParseAddr("127.0.0.1"), IdleTimeout: time.Hour}, be.Port())
			c, err := tls.Dial("tcp", s.addr(), ca.Client("a.example.test"))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			got, err := io.ReadAll(c) // the device stays silent and reads to the end
			if string(got) != tc.want {
				t.Fatalf("device read %d bytes (%v), want %d", len(got), err, len(tc.want))
			}
			if tc.name == "answers then FIN" {
				c.Close() // the device is done too: the stream ends; a reset ended it already
			}
			s.events.next(t, forwarder.EventOpen)
			ev := s.events.next(t, forwarder.EventClose)
			if ev.Reason != forwarder.ReasonEOF || ev.BytesDown < int64(len(tc.want)) || ev.Duration > 5*time.Second {
				t.Errorf("close %s after %v with %d bytes down, want eof at once with at least %d", ev.Reason, ev.Duration, ev.BytesDown, len(tc.want))
			}
		})
	}
}
