package forwarder_test

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lnm-project/lnm/allowlist"
	"github.com/lnm-project/lnm/forwarder"
	"github.com/lnm-project/lnm/httpfront"
	"github.com/lnm-project/lnm/internal/testkit"
)

// startFront runs a forwarder whose first port is an http or connect port.
func startFront(t *testing.T, cfg forwarder.Config, front forwarder.Front, upstreamPort uint16) *setup {
	t.Helper()
	testkit.NoLeaks(t)
	s := &setup{events: newEvents(), port: testkit.FreePort(t)}
	cfg.Listen = netip.MustParseAddr("127.0.0.1")
	cfg.Ports = []forwarder.PortMap{{Listen: s.port, Upstream: upstreamPort, Front: front}}
	cfg.OnEvent = s.events.add
	f, err := forwarder.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Start(); err != nil {
		t.Fatal(err)
	}
	s.cfg, s.fwd = cfg, f
	t.Cleanup(func() { f.Close() })
	return s
}

// exchange sends raw bytes, half-closes nothing, and reads until the box or the server
// closes; it returns every response it could parse.
func exchange(t *testing.T, addr, req string) []*http.Response {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	var out []*http.Response
	for {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return out
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body = io.NopCloser(strings.NewReader(string(body)))
		out = append(out, resp)
	}
}

func bodyOf(r *http.Response) string {
	b, _ := io.ReadAll(r.Body)
	return string(b)
}

// hostBackend answers each request with its Host and whether it asked to close.
func hostBackend(t *testing.T) (port uint16, seen func() []string) {
	var mu sync.Mutex
	var hosts []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		hosts = append(hosts, r.Host)
		mu.Unlock()
		fmt.Fprintf(w, "host=%s close=%v", r.Host, r.Close)
	}))
	t.Cleanup(srv.Close)
	return netip.MustParseAddrPort(srv.Listener.Addr().String()).Port(), func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), hosts...)
	}
}

func TestHTTPFront(t *testing.T) {
	bePort, seen := hostBackend(t)
	s := startFront(t, forwarder.Config{
		List:   rules(t, "allowed.test", "other.test 8883"),
		Parent: netip.MustParseAddr("127.0.0.1"),
	}, forwarder.FrontHTTP, bePort)

	t.Run("allowed", func(t *testing.T) {
		resps := exchange(t, s.addr(), "GET / HTTP/1.1\r\nHost: Allowed.Test\r\nConnection: keep-alive\r\n\r\n")
		if len(resps) != 1 || resps[0].StatusCode != 200 || bodyOf(resps[0]) != "host=Allowed.Test close=true" {
			t.Fatalf("responses %v", resps)
		}
		open := s.events.next(t, forwarder.EventOpen)
		if open.Proto != forwarder.FrontHTTP || open.SNI != "allowed.test" || open.Via != forwarder.ViaParent || open.Upstream.Port() != bePort {
			t.Errorf("open event %+v", open)
		}
		if closed := s.events.next(t, forwarder.EventClose); closed.BytesDown == 0 || closed.Proto != forwarder.FrontHTTP {
			t.Errorf("close event %+v", closed)
		}
	})
	t.Run("second request for another host", func(t *testing.T) {
		before := len(seen())
		resps := exchange(t, s.addr(), "GET /1 HTTP/1.1\r\nHost: allowed.test\r\n\r\nGET /2 HTTP/1.1\r\nHost: denied.test\r\n\r\n")
		if len(resps) != 1 || resps[0].StatusCode != 200 {
			t.Fatalf("%d responses, want the first request's only", len(resps))
		}
		s.events.next(t, forwarder.EventClose)
		if got := seen()[before:]; len(got) != 1 || got[0] != "allowed.test" {
			t.Fatalf("the server served %q; the connection must carry one request", got)
		}
	})
	for _, tc := range []struct {
		name, req string
		status    int
		reason    allowlist.Reason
		text      string
	}{
		{"denied", "GET / HTTP/1.1\r\nHost: denied.test\r\n\r\n", 403, allowlist.ReasonNotListed, "add the rule: denied.test " + fmt.Sprint(s.port)},
		{"port not allowed", "GET / HTTP/1.1\r\nHost: other.test\r\n\r\n", 403, allowlist.ReasonPortNotAllowed, "allowed only on 8883"},
		{"address", "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 403, allowlist.ReasonNotListed, "is an address"},
		{"no host", "GET / HTTP/1.1\r\n\r\n", 400, httpfront.ReasonNoHost, "no Host"},
		{"two hosts", "GET / HTTP/1.1\r\nHost: allowed.test\r\nHost: denied.test\r\n\r\n", 400, httpfront.ReasonBadHost, "two Host"},
		{"absolute-form disagrees", "GET http://allowed.test/ HTTP/1.1\r\nHost: denied.test\r\n\r\n", 400, httpfront.ReasonBadHost, "disagrees"},
		{"CONNECT", "CONNECT allowed.test:443 HTTP/1.1\r\n\r\n", 405, httpfront.ReasonMethodNotAllowed, "connect port"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(seen())
			resps := exchange(t, s.addr(), tc.req)
			if len(resps) != 1 || resps[0].StatusCode != tc.status || resps[0].Header.Get("X-Lnm-Reason") != string(tc.reason) {
				t.Fatalf("responses %v, want one %d", resps, tc.status)
			}
			if body := bodyOf(resps[0]); !strings.Contains(body, tc.text) {
				t.Errorf("body %q lacks %q", body, tc.text)
			}
			if ev := s.events.next(t, forwarder.EventDeny); ev.Reason != tc.reason || ev.Proto != forwarder.FrontHTTP {
				t.Errorf("deny event %+v", ev)
			}
			if len(seen()) != before {
				t.Errorf("the server saw a refused request")
			}
		})
	}
}

// connectTunnel sends a CONNECT and returns the connection once the box answered 200.
func connectTunnel(t *testing.T, addr, target string) (net.Conn, *http.Response) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\nProxy-Connection: Keep-Alive\r\n\r\n", target, target)
	// The box sends nothing after its 200 until the tunnel's server does, so a buffered
	// reader takes no tunnel bytes with the response.
	resp, err := http.ReadResponse(bufio.NewReaderSize(c, 16), &http.Request{Method: "CONNECT"})
	if err != nil {
		t.Fatalf("CONNECT %s: %v", target, err)
	}
	return c, resp
}

func TestConnectFront(t *testing.T) {
	ca := testkit.NewCA(t)
	be := testkit.TLSEcho(t, "127.0.0.1:0", ca.Issue(t, "allowed.test", "other.test"))
	port := be.Port()
	s := startFront(t, forwarder.Config{
		List: rules(t, "allowed.test", "ported.test 8883", "other.test",
			fmt.Sprintf("historian.test to 127.0.0.1:%d", port)),
		Parent: netip.MustParseAddr("127.0.0.1"),
	}, forwarder.FrontConnect, 0)

	tunnel := func(t *testing.T, target, sni string) (string, error) {
		c, resp := connectTunnel(t, s.addr(), target)
		if resp.StatusCode != 200 {
			t.Fatalf("CONNECT %s: %s", target, resp.Status)
		}
		tc := tls.Client(c, ca.Client(sni))
		defer tc.Close()
		if _, err := io.WriteString(tc, "hello"); err != nil {
			return "", err
		}
		buf := make([]byte, 100)
		n, err := tc.Read(buf)
		return string(buf[:n]), err
	}
	t.Run("allowed", func(t *testing.T) {
		got, err := tunnel(t, fmt.Sprintf("allowed.test:%d", port), "allowed.test")
		if err != nil || got != "allowed.test:hello" {
			t.Fatalf("reply %q, %v", got, err)
		}
		open := s.events.next(t, forwarder.EventOpen)
		if open.Proto != forwarder.FrontConnect || open.SNI != "allowed.test" || open.Upstream.Port() != port || open.HelloSize == 0 {
			t.Errorf("open event %+v", open)
		}
		s.events.next(t, forwarder.EventClose)
	})
	t.Run("address named by a rule's to", func(t *testing.T) {
		got, err := tunnel(t, fmt.Sprintf("127.0.0.1:%d", port), "other.test")
		if err != nil || got != "other.test:hello" {
			t.Fatalf("reply %q, %v", got, err)
		}
		if open := s.events.next(t, forwarder.EventOpen); open.Via != forwarder.ViaTo || open.Rule == nil || open.Rule.Pattern.String() != "historian.test" {
			t.Errorf("open event %+v", open)
		}
		s.events.next(t, forwarder.EventClose)
	})
	t.Run("sni mismatch", func(t *testing.T) {
		if _, err := tunnel(t, fmt.Sprintf("allowed.test:%d", port), "other.test"); err == nil {
			t.Fatal("the tunnel carried a hello for another name")
		}
		if ev := s.events.next(t, forwarder.EventDeny); ev.Reason != httpfront.ReasonSNIMismatch || ev.SNI != "allowed.test" {
			t.Errorf("deny event %+v", ev)
		}
	})
	for _, tc := range []struct {
		name, target string
		reason       allowlist.Reason
	}{
		{"denied", fmt.Sprintf("denied.test:%d", port), allowlist.ReasonNotListed},
		{"port not allowed", fmt.Sprintf("ported.test:%d", port), allowlist.ReasonPortNotAllowed},
		{"address", "127.0.0.2:443", allowlist.ReasonNotListed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, resp := connectTunnel(t, s.addr(), tc.target)
			if resp.StatusCode != 403 || resp.Header.Get("X-Lnm-Reason") != string(tc.reason) {
				t.Fatalf("CONNECT %s: %s %v", tc.target, resp.Status, resp.Header)
			}
			if ev := s.events.next(t, forwarder.EventDeny); ev.Reason != tc.reason || ev.Proto != forwarder.FrontConnect {
				t.Errorf("deny event %+v", ev)
			}
		})
	}
	t.Run("GET", func(t *testing.T) {
		resps := exchange(t, s.addr(), "GET http://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\n\r\n")
		if len(resps) != 1 || resps[0].StatusCode != 405 || resps[0].Header.Get("Allow") != "CONNECT" {
			t.Fatalf("responses %v", resps)
		}
		s.events.next(t, forwarder.EventDeny)
	})
	for _, sni := range be.Seen() {
		if sni != "allowed.test" && sni != "other.test" {
			t.Errorf("backend saw %q", sni)
		}
	}
}

// TestConnectRevoked: a reload decides live tunnels again on the CONNECT's port (not the
// connect port's own) and an IP-literal tunnel on its address: both survive a list that
// still allows them and are closed as revoked by one that does not.
func TestConnectRevoked(t *testing.T) {
	ca := testkit.NewCA(t)
	be := testkit.TLSEcho(t, "127.0.0.1:0", ca.Issue(t, "allowed.test"))
	port := be.Port()
	toRule := fmt.Sprintf("historian.test to 127.0.0.1:%d", port)
	s := startFront(t, forwarder.Config{
		List:   rules(t, fmt.Sprintf("allowed.test %d", port), toRule),
		Parent: netip.MustParseAddr("127.0.0.1"),
	}, forwarder.FrontConnect, 0)
	open := func(target string) *tls.Conn {
		c, resp := connectTunnel(t, s.addr(), target)
		if resp.StatusCode != 200 {
			t.Fatalf("CONNECT %s: %s", target, resp.Status)
		}
		tc := tls.Client(c, ca.Client("allowed.test"))
		alive(t, tc, "allowed.test")
		s.events.next(t, forwarder.EventOpen)
		return tc
	}
	byName := open(fmt.Sprintf("allowed.test:%d", port))
	byAddr := open(fmt.Sprintf("127.0.0.1:%d", port))

	cfg := s.cfg
	cfg.List = rules(t, fmt.Sprintf("allowed.test %d", port), toRule, "other.test")
	if err := reconfigure(s.fwd, cfg); err != nil {
		t.Fatal(err)
	}
	noEvent(t, s)
	alive(t, byName, "allowed.test")
	alive(t, byAddr, "allowed.test")

	cfg.List = rules(t, "other.test")
	if err := reconfigure(s.fwd, cfg); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if ev := s.events.next(t, forwarder.EventClose); ev.Reason != forwarder.ReasonRevoked || ev.Proto != forwarder.FrontConnect {
			t.Errorf("close event %+v, want revoked", ev)
		}
	}
}

// TestHTTPFrontSlowAndNotHTTP: a head that stops arriving is closed at hello_timeout from
// accept (request_head_timeout), and a TLS hello on an http port is not HTTP; neither
// reaches the server.
func TestHTTPFrontSlowAndNotHTTP(t *testing.T) {
	bePort, seen := hostBackend(t)
	s := startFront(t, forwarder.Config{
		List:         rules(t, "allowed.test"),
		Parent:       netip.MustParseAddr("127.0.0.1"),
		HelloTimeout: 300 * time.Millisecond,
	}, forwarder.FrontHTTP, bePort)
	for _, tc := range []struct {
		name, send string
		reason     allowlist.Reason
	}{
		{"slow", "GET / HTTP/1.1\r\nHost: allo", httpfront.ReasonHeadTimeout},
		{"TLS", string(rawHello(t, "allowed.test")), httpfront.ReasonNotHTTP},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", s.addr())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			io.WriteString(c, tc.send)
			if ev := s.events.next(t, forwarder.EventDeny); ev.Reason != tc.reason || ev.Proto != forwarder.FrontHTTP {
				t.Errorf("deny event %+v, want %s", ev, tc.reason)
			}
			c.SetReadDeadline(time.Now().Add(20 * time.Second))
			if b, _ := io.ReadAll(c); len(b) != 0 {
				t.Errorf("the box answered %q; it closes without a reply", b)
			}
		})
	}
	if got := seen(); len(got) != 0 {
		t.Errorf("the server saw %q", got)
	}
}

// TestHTTPDeniedPostGetsItsReply: a device still sending a 4 MiB request body when the box
// refuses it reads the 403 before any reset the close causes, and the refusal is recorded
// once. (Closing with unread bytes resets the connection; Linux still hands the device the
// reply it had received first. A box that reset without writing it, as for flood denials,
// fails this.)
func TestHTTPDeniedPostGetsItsReply(t *testing.T) {
	s := startFront(t, forwarder.Config{
		List:   rules(t, "allowed.test"),
		Parent: netip.MustParseAddr("127.0.0.1"),
	}, forwarder.FrontHTTP, 9)
	const body = 4 << 20
	for i := range 3 {
		c, err := net.Dial("tcp", s.addr())
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(30 * time.Second))
		head := fmt.Sprintf("POST /upload HTTP/1.1\r\nHost: denied.test\r\nContent-Length: %d\r\n\r\n", body)
		go func() {
			c.Write([]byte(head))
			chunk := make([]byte, 64<<10)
			for sent := 0; sent < body; sent += len(chunk) {
				if _, err := c.Write(chunk); err != nil {
					return // the box closed: expected once it has drained a while
				}
			}
		}()
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("try %d: reading the reply: %v", i, err)
		}
		if resp.StatusCode != 403 {
			t.Fatalf("try %d: status %d, want 403", i, resp.StatusCode)
		}
		c.Close()
		if ev := s.events.next(t, forwarder.EventDeny); ev.Reason != allowlist.ReasonNotListed {
			t.Errorf("try %d: deny event %+v", i, ev)
		}
	}
}
