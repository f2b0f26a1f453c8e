package forwarder_test

import (
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/lnm-project/lnm/forwarder"
	"github.com/lnm-project/lnm/internal/testkit"
)

// outcome is what a client sees of one TLS session: compared between a run straight to the
// server and a run through the box.
type outcome struct {
	Version, Suite uint16
	Curve          tls.CurveID
	ALPN           string
	Resumed        bool
	Reply          string
}

func (o outcome) String() string {
	return fmt.Sprintf("%s %s %s alpn=%q resumed=%v reply=%q", tls.VersionName(o.Version), tls.CipherSuiteName(o.Suite), o.Curve, o.ALPN, o.Resumed, o.Reply)
}

// session dials addr with cfg, sends one message and reads the echo server's reply.
func session(addr string, cfg *tls.Config) (outcome, error) {
	c, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		return outcome{}, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(c, "ping"); err != nil {
		return outcome{}, err
	}
	buf := make([]byte, 100)
	n, err := c.Read(buf)
	if n == 0 { // a reply may come with the server's close_notify: (n, EOF)
		return outcome{}, err
	}
	st := c.ConnectionState()
	return outcome{st.Version, st.CipherSuite, st.CurveID, st.NegotiatedProtocol, st.DidResume, string(buf[:n])}, nil
}

// TestCase12SameResultsDirectAndThroughTheBox is the faults catalog's case 12: one suite of
// client sessions, run straight against the server and through the box, must give the same
// results: TLS 1.3 and 1.2, a HelloRetryRequest (the server takes only P-256, which the
// client does not send a key share for, so its second hello travels inside the splice),
// PSK resumption from a session ticket, and ALPN h2 and mqtt.
func TestCase12SameResultsDirectAndThroughTheBox(t *testing.T) {
	ca := testkit.NewCA(t)
	cert := ca.Issue(t, "a.example.test", "hrr.example.test")
	echo := func(c *tls.Conn) {
		if c.Handshake() != nil {
			return
		}
		buf := make([]byte, 100)
		n, err := c.Read(buf)
		if err != nil {
			return
		}
		fmt.Fprintf(c, "%s:%s", c.ConnectionState().ServerName, buf[:n])
	}
	be := testkit.ServeTLS(t, "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2", "mqtt"}}, echo)
	hrr := testkit.ServeTLS(t, "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, CurvePreferences: []tls.CurveID{tls.CurveP256}}, echo)
	box := start(t, forwarder.Config{
		List: rules(t,
			fmt.Sprintf("a.example.test to 127.0.0.1:%d", be.Port()),
			fmt.Sprintf("hrr.example.test to 127.0.0.1:%d", hrr.Port())),
		Parent: netip.MustParseAddr("127.0.0.1"),
	}, 9)
	direct := map[string]string{"a.example.test": be.Addr().String(), "hrr.example.test": hrr.Addr().String()}

	for _, tc := range []struct {
		name, sni string
		cfg       func(*tls.Config)
		check     func(first, second outcome) error // on the direct run
	}{
		{"TLS 1.3", "a.example.test", func(*tls.Config) {}, nil},
		{"TLS 1.2", "a.example.test", func(c *tls.Config) { c.MaxVersion = tls.VersionTLS12 }, nil},
		{"HelloRetryRequest", "hrr.example.test", func(*tls.Config) {}, func(o, _ outcome) error {
			if o.Curve != tls.CurveP256 {
				return fmt.Errorf("curve %s, want P-256 after a retry", o.Curve)
			}
			return nil
		}},
		{"PSK resumption", "a.example.test", func(c *tls.Config) { c.ClientSessionCache = tls.NewLRUClientSessionCache(4) }, func(first, second outcome) error {
			if first.Resumed || !second.Resumed {
				return fmt.Errorf("resumed %v then %v, want false then true", first.Resumed, second.Resumed)
			}
			return nil
		}},
		{"ALPN h2", "a.example.test", func(c *tls.Config) { c.NextProtos = []string{"h2", "http/1.1"} }, nil},
		{"ALPN mqtt", "a.example.test", func(c *tls.Config) { c.NextProtos = []string{"mqtt"} }, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			run := func(addr string) [2]outcome {
				cfg := ca.Client(tc.sni)
				tc.cfg(cfg)
				var out [2]outcome
				for i := range out { // twice, with the same config: resumption shows on the second
					o, err := session(addr, cfg)
					if err != nil {
						t.Fatalf("session %d to %s: %v", i+1, addr, err)
					}
					out[i] = o
				}
				return out
			}
			straight, through := run(direct[tc.sni]), run(box.addr())
			if straight != through {
				t.Errorf("direct: %v / %v\nthrough the box: %v / %v", straight[0], straight[1], through[0], through[1])
			}
			if tc.check != nil {
				if err := tc.check(straight[0], straight[1]); err != nil {
					t.Errorf("the case did not happen: %v", err)
				}
			}
		})
	}
}

// greased returns hello with GREASE values added (RFC 8701): 0x0a0a first among the cipher
// suites and an empty extension 0x1a1a first among the extensions, lengths fixed up.
func greased(t *testing.T, hello []byte) []byte {
	t.Helper()
	h := append([]byte(nil), hello...)
	grow := func(at, by int) { // adds by to the big-endian length field at h[at:]
		binary.BigEndian.PutUint16(h[at:], binary.BigEndian.Uint16(h[at:])+uint16(by))
	}
	insert := func(at int, b ...byte) { h = append(h[:at], append(append([]byte(nil), b...), h[at:]...)...) }
	const rec, hs = 5, 4
	sid := rec + hs + 2 + 32
	suites := sid + 1 + int(h[sid])
	insert(suites+2, 0x0a, 0x0a)
	grow(suites, 2)
	comp := suites + 2 + int(binary.BigEndian.Uint16(h[suites:]))
	exts := comp + 1 + int(h[comp])
	insert(exts+2, 0x1a, 0x1a, 0, 0)
	grow(exts, 4)
	grow(3, 6) // the record's length
	n := int(h[6])<<16 | int(h[7])<<8 | int(h[8]) + 6
	h[6], h[7], h[8] = byte(n>>16), byte(n>>8), byte(n) // the handshake message's, 24 bits
	return h
}

// TestCase12GreaseReachesUpstream: a hello with GREASE cipher suite and extension values is
// decided like any other and reaches upstream byte for byte.
func TestCase12GreaseReachesUpstream(t *testing.T) {
	port, got := plainBackend(t)
	s := start(t, forwarder.Config{List: rules(t, "a.example.test"), Parent: netip.MustParseAddr("127.0.0.1")}, port)
	hello := greased(t, rawHello(t, "a.example.test"))
	c, err := net.Dial("tcp", s.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write(hello)
	if ev := s.events.nextWithin(t, forwarder.EventOpen, 30*time.Second); ev.SNI != "a.example.test" {
		t.Fatalf("open %+v", ev)
	}
	c.(*net.TCPConn).CloseWrite()
	select {
	case b := <-got:
		if !bytes.Equal(b, hello) {
			t.Errorf("upstream got %d bytes, not the %d-byte GREASE hello as sent", len(b), len(hello))
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the upstream got nothing")
	}
}
