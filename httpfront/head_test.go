package httpfront

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/lnm-project/lnm/allowlist"
)

// cases are request heads and what Parse makes of them, on an http port or (connect) on a
// connect port.
var cases = []struct {
	name    string
	head    string
	connect bool
	want    Request // Head is not compared
	reason  allowlist.Reason
	status  int // the reply's status; 0: no reply
}{
	{name: "origin-form", head: "GET / HTTP/1.1\r\nHost: allowed.test\r\n\r\n",
		want: Request{Method: "GET", Name: "allowed.test"}},
	{name: "HTTP/1.0", head: "GET /fw.bin HTTP/1.0\r\nHost: allowed.test\r\n\r\n",
		want: Request{Method: "GET", Name: "allowed.test"}},
	{name: "host with port", head: "GET / HTTP/1.1\r\nHost: allowed.test:8080\r\n\r\n",
		want: Request{Method: "GET", Name: "allowed.test", Port: 8080}},
	{name: "upper case name and header", head: "GET / HTTP/1.1\r\nHOST: Allowed.TEST\r\n\r\n",
		want: Request{Method: "GET", Name: "allowed.test"}},
	{name: "lower case header", head: "GET / HTTP/1.1\r\nhost: allowed.test\r\n\r\n",
		want: Request{Method: "GET", Name: "allowed.test"}},
	{name: "trailing dot", head: "GET / HTTP/1.1\r\nHost: allowed.test.\r\n\r\n",
		want: Request{Method: "GET", Name: "allowed.test"}},
	{name: "spaces around value", head: "GET / HTTP/1.1\r\nHost: \t allowed.test \t\r\n\r\n",
		want: Request{Method: "GET", Name: "allowed.test"}},
	{name: "bare LF", head: "GET / HTTP/1.1\nHost: allowed.test\n\n",
		want: Request{Method: "GET", Name: "allowed.test"}},
	{name: "IDN in UTF-8 becomes punycode", head: "GET / HTTP/1.1\r\nHost: bücher.test\r\n\r\n",
		want: Request{Method: "GET", Name: "xn--bcher-kva.test"}},
	{name: "IDN already punycode", head: "GET / HTTP/1.1\r\nHost: xn--bcher-kva.test\r\n\r\n",
		want: Request{Method: "GET", Name: "xn--bcher-kva.test"}},
	{name: "IPv4 literal", head: "GET / HTTP/1.1\r\nHost: 198.18.5.10\r\n\r\n",
		want: Request{Method: "GET", Addr: netip.MustParseAddr("198.18.5.10")}},
	{name: "IPv6 literal with port", head: "GET / HTTP/1.1\r\nHost: [2001:db8::1]:8080\r\n\r\n",
		want: Request{Method: "GET", Addr: netip.MustParseAddr("2001:db8::1"), Port: 8080}},
	{name: "IPv6 literal", head: "GET / HTTP/1.1\r\nHost: [2001:db8::1]\r\n\r\n",
		want: Request{Method: "GET", Addr: netip.MustParseAddr("2001:db8::1")}},
	{name: "absolute-form", head: "GET http://allowed.test/fw.bin HTTP/1.1\r\nHost: allowed.test\r\n\r\n",
		want: Request{Method: "GET", Name: "allowed.test"}},
	{name: "absolute-form without Host", head: "GET HTTP://Allowed.test:80?x=1 HTTP/1.1\r\n\r\n",
		want: Request{Method: "GET", Name: "allowed.test", Port: 80}},
	{name: "absolute-form default port", head: "GET http://allowed.test:80/ HTTP/1.1\r\nHost: allowed.test\r\n\r\n",
		want: Request{Method: "GET", Name: "allowed.test", Port: 80}},
	{name: "absolute-form port disagrees", head: "GET http://allowed.test:8080/ HTTP/1.1\r\nHost: allowed.test\r\n\r\n",
		reason: ReasonBadHost, status: 400},
	{name: "absolute-form Host disagrees", head: "GET http://allowed.test/ HTTP/1.1\r\nHost: denied.test\r\n\r\n",
		reason: ReasonBadHost, status: 400},
	{name: "absolute-form userinfo", head: "GET http://denied.test@allowed.test/ HTTP/1.1\r\n\r\n",
		reason: ReasonBadHost, status: 400},
	{name: "absolute-form https", head: "GET https://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\n\r\n",
		reason: ReasonBadRequest, status: 400},
	{name: "websocket upgrade", head: "GET /mqtt HTTP/1.1\r\nHost: allowed.test\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n",
		want: Request{Method: "GET", Name: "allowed.test", Upgrade: true}},
	{name: "OPTIONS *", head: "OPTIONS * HTTP/1.1\r\nHost: allowed.test\r\n\r\n",
		want: Request{Method: "OPTIONS", Name: "allowed.test"}},

	{name: "no Host", head: "GET / HTTP/1.1\r\n\r\n", reason: ReasonNoHost, status: 400},
	{name: "HTTP/1.0 without Host", head: "GET / HTTP/1.0\r\n\r\n", reason: ReasonNoHost, status: 400},
	{name: "empty Host", head: "GET / HTTP/1.1\r\nHost:\r\n\r\n", reason: ReasonBadHost, status: 400},
	{name: "two Host headers", head: "GET / HTTP/1.1\r\nHost: allowed.test\r\nHost: denied.test\r\n\r\n", reason: ReasonBadHost, status: 400},
	{name: "two Host headers same value", head: "GET / HTTP/1.1\r\nHost: allowed.test\r\nhost: allowed.test\r\n\r\n", reason: ReasonBadHost, status: 400},
	{name: "obs-fold", head: "GET / HTTP/1.1\r\nHost: allowed.test\r\nX-A: 1\r\n denied.test\r\n\r\n", reason: ReasonBadRequest, status: 400},
	{name: "obs-fold of Host", head: "GET / HTTP/1.1\r\nHost:\r\n\tallowed.test\r\n\r\n", reason: ReasonBadRequest, status: 400},
	{name: "space before colon", head: "GET / HTTP/1.1\r\nHost : denied.test\r\n\r\n", reason: ReasonBadRequest, status: 400},
	{name: "no colon", head: "GET / HTTP/1.1\r\nHost allowed.test\r\n\r\n", reason: ReasonBadRequest, status: 400},
	{name: "control byte", head: "GET / HTTP/1.1\r\nHost: allowed.test\x00x\r\n\r\n", reason: ReasonBadRequest, status: 400},
	{name: "name with slash", head: "GET / HTTP/1.1\r\nHost: allowed.test/x\r\n\r\n", reason: ReasonBadHost, status: 400},
	{name: "bad port", head: "GET / HTTP/1.1\r\nHost: allowed.test:99999\r\n\r\n", reason: ReasonBadHost, status: 400},
	{name: "empty port", head: "GET / HTTP/1.1\r\nHost: allowed.test:\r\n\r\n", reason: ReasonBadHost, status: 400},
	{name: "IPv6 without brackets", head: "GET / HTTP/1.1\r\nHost: 2001:db8::1\r\n\r\n", reason: ReasonBadHost, status: 400},
	{name: "IPv6 with zone", head: "GET / HTTP/1.1\r\nHost: [fe80::1%eth0]\r\n\r\n", reason: ReasonBadHost, status: 400},
	{name: "relative target", head: "GET index.html HTTP/1.1\r\nHost: allowed.test\r\n\r\n", reason: ReasonBadRequest, status: 400},
	{name: "HTTP/2 preface", head: "PRI * HTTP/2.0\r\n\r\n", reason: ReasonNotHTTP},
	{name: "HTTP/0.9", head: "GET /\r\n\r\n", reason: ReasonNotHTTP},
	{name: "double space", head: "GET  / HTTP/1.1\r\nHost: allowed.test\r\n\r\n", reason: ReasonNotHTTP},
	{name: "CONNECT on the http port", head: "CONNECT allowed.test:443 HTTP/1.1\r\nHost: allowed.test:443\r\n\r\n", reason: ReasonMethodNotAllowed, status: 405},

	{name: "CONNECT", connect: true, head: "CONNECT allowed.test:443 HTTP/1.1\r\nHost: allowed.test:443\r\nUser-Agent: curl\r\nProxy-Connection: Keep-Alive\r\n\r\n",
		want: Request{Method: "CONNECT", Name: "allowed.test", Port: 443}},
	{name: "CONNECT without Host", connect: true, head: "CONNECT Allowed.Test:8883 HTTP/1.1\r\n\r\n",
		want: Request{Method: "CONNECT", Name: "allowed.test", Port: 8883}},
	{name: "CONNECT IPv4", connect: true, head: "CONNECT 198.18.4.20:443 HTTP/1.1\r\n\r\n",
		want: Request{Method: "CONNECT", Addr: netip.MustParseAddr("198.18.4.20"), Port: 443}},
	{name: "CONNECT IPv6", connect: true, head: "CONNECT [2001:db8::20]:443 HTTP/1.1\r\n\r\n",
		want: Request{Method: "CONNECT", Addr: netip.MustParseAddr("2001:db8::20"), Port: 443}},
	{name: "CONNECT without port", connect: true, head: "CONNECT allowed.test HTTP/1.1\r\n\r\n", reason: ReasonBadHost, status: 400},
	{name: "CONNECT port 0", connect: true, head: "CONNECT allowed.test:0 HTTP/1.1\r\n\r\n", reason: ReasonBadHost, status: 400},
	{name: "CONNECT a URL", connect: true, head: "CONNECT http://allowed.test:443/ HTTP/1.1\r\n\r\n", reason: ReasonBadHost, status: 400},
	{name: "CONNECT two Hosts", connect: true, head: "CONNECT allowed.test:443 HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n", reason: ReasonBadHost, status: 400},
	{name: "GET on the connect port", connect: true, head: "GET http://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\n\r\n", reason: ReasonMethodNotAllowed, status: 405},
	{name: "lower-case connect", connect: true, head: "connect allowed.test:443 HTTP/1.1\r\n\r\n", reason: ReasonMethodNotAllowed, status: 405},
}

func TestParse(t *testing.T) {
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, err := Parse([]byte(tc.head), tc.connect)
			checkResult(t, req, err, tc.want, tc.reason, tc.status)
		})
	}
}

func checkResult(t *testing.T, req Request, err error, want Request, reason allowlist.Reason, status int) {
	t.Helper()
	if reason == "" {
		if err != nil {
			t.Fatalf("error %v", err)
		}
		req.Head = 0
		if req != want {
			t.Fatalf("got %+v, want %+v", req, want)
		}
		return
	}
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("got %+v, %v; want reason %s", req, err, reason)
	}
	if e.Reason != reason {
		t.Fatalf("reason %s (%v), want %s", e.Reason, err, reason)
	}
	if got := replyStatus(e.Reply); got != status {
		t.Fatalf("reply status %d, want %d: %q", got, status, e.Reply)
	}
}

func replyStatus(b []byte) int {
	if len(b) < 12 {
		return 0
	}
	s := 0
	for _, c := range b[9:12] {
		s = s*10 + int(c-'0')
	}
	return s
}

// TestReadHeadSplit reads every case whole, split at every byte, and one byte at a time,
// followed by early body bytes that must come back in raw.
func TestReadHeadSplit(t *testing.T) {
	const early = "early-body"
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := tc.head + early
			readers := map[string]func() io.Reader{
				"whole":      func() io.Reader { return strings.NewReader(in) },
				"one byte":   func() io.Reader { return iotest.OneByteReader(strings.NewReader(in)) },
				"data+error": func() io.Reader { return iotest.DataErrReader(strings.NewReader(in)) },
			}
			for i := 1; i < len(tc.head); i++ {
				readers["split"] = func() io.Reader { return io.MultiReader(strings.NewReader(in[:i]), strings.NewReader(in[i:])) }
				raw, req, err := ReadHead(readers["split"](), tc.connect, 0)
				checkRead(t, "split at "+string(rune('0'+i%10)), raw, req, err, tc.head, in, tc)
			}
			delete(readers, "split")
			for name, r := range readers {
				raw, req, err := ReadHead(r(), tc.connect, 0)
				checkRead(t, name, raw, req, err, tc.head, in, tc)
			}
		})
	}
}

func checkRead(t *testing.T, how string, raw []byte, req Request, err error, head, in string, tc struct {
	name    string
	head    string
	connect bool
	want    Request
	reason  allowlist.Reason
	status  int
}) {
	t.Helper()
	if tc.reason == ReasonNotHTTP {
		var e *Error
		if !errors.As(err, &e) || e.Reason != ReasonNotHTTP {
			t.Fatalf("%s: %v, want not_http", how, err)
		}
		return
	}
	checkResult(t, req, err, tc.want, tc.reason, tc.status)
	if !strings.HasPrefix(in, string(raw)) || len(raw) < len(head) {
		t.Fatalf("%s: raw %q is not a prefix of the input holding the head", how, raw)
	}
	if err == nil && req.Head != len(head) {
		t.Fatalf("%s: head length %d, want %d", how, req.Head, len(head))
	}
}

func TestReadHeadErrors(t *testing.T) {
	big := "GET / HTTP/1.1\r\nHost: allowed.test\r\nX: " + strings.Repeat("a", 600) + "\r\n\r\n"
	for _, tc := range []struct {
		name   string
		in     string
		max    int
		reason allowlist.Reason
	}{
		{"oversize", big, 512, ReasonHeadTooLarge},
		{"oversize default", "GET / HTTP/1.1\r\nX: " + strings.Repeat("a", MaxHeadSize) + "\r\n\r\n", 0, ReasonHeadTooLarge},
		{"closed mid-head", "GET / HTTP/1.1\r\nHost: allowed", 0, ReasonClientClosed},
		{"closed at once", "", 0, ReasonClientClosed},
		{"TLS", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 0, ReasonNotHTTP},
		{"long method", strings.Repeat("G", 40), 0, ReasonNotHTTP},
		{"leading empty line", "\r\nGET / HTTP/1.1\r\nHost: a.test\r\n\r\n", 0, ReasonNotHTTP},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := ReadHead(iotest.OneByteReader(strings.NewReader(tc.in)), false, tc.max)
			var e *Error
			if !errors.As(err, &e) || e.Reason != tc.reason {
				t.Fatalf("%v, want %s", err, tc.reason)
			}
			if tc.reason == ReasonHeadTooLarge && replyStatus(e.Reply) != 400 {
				t.Fatalf("reply %q", e.Reply)
			}
		})
	}
	// Exactly at the cap still fits.
	head := "GET / HTTP/1.1\r\nHost: allowed.test\r\n\r\n"
	if _, _, err := ReadHead(strings.NewReader(head), false, len(head)); err != nil {
		t.Fatalf("head of exactly the cap: %v", err)
	}
}

// TestReadHeadSlow: a head that stops arriving ends at the caller's deadline with
// ReasonHeadTimeout, after what arrived is kept.
func TestReadHeadSlow(t *testing.T) {
	client, server := net.Pipe()
	defer client.Close()
	defer server.Close()
	go client.Write([]byte("GET / HTTP/1.1\r\nHost: allo"))
	server.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	raw, _, err := ReadHead(server, false, 0)
	var e *Error
	if !errors.As(err, &e) || e.Reason != ReasonHeadTimeout || e.Reply != nil {
		t.Fatalf("%v, want a timeout without a reply", err)
	}
	if string(raw) != "GET / HTTP/1.1\r\nHost: allo" {
		t.Fatalf("raw %q", raw)
	}
}

func TestForward(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"adds close", "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n", "GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n"},
		{"replaces keep-alive", "GET / HTTP/1.1\r\nHost: a.test\r\nconnection: keep-alive\r\nKeep-Alive: timeout=5\r\nProxy-Connection: Keep-Alive\r\nAccept: */*\r\n\r\n",
			"GET / HTTP/1.1\r\nHost: a.test\r\nAccept: */*\r\nConnection: close\r\n\r\n"},
		{"bare LF", "GET / HTTP/1.0\nHost: a.test\n\n", "GET / HTTP/1.0\nHost: a.test\nConnection: close\r\n\n"},
		{"upgrade untouched", "GET / HTTP/1.1\r\nHost: a.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
			"GET / HTTP/1.1\r\nHost: a.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := Parse([]byte(tc.in), false)
			if err != nil {
				t.Fatal(err)
			}
			if got := Forward([]byte(tc.in), &req); string(got) != tc.want {
				t.Fatalf("got %q\nwant %q", got, tc.want)
			}
		})
	}
}

func TestReplies(t *testing.T) {
	l, err := allowlist.New([]allowlist.Rule{
		mustRule(t, "allowed.test", "80"),
		mustRule(t, "plc.test", "443", "from", "198.18.3.20/32"),
	})
	if err != nil {
		t.Fatal(err)
	}
	src := netip.MustParseAddr("198.18.3.21")
	for _, tc := range []struct {
		name   allowlist.Name
		port   uint16
		reason allowlist.Reason
		text   []string
	}{
		{"denied.test", 80, allowlist.ReasonNotListed, []string{"denied.test is denied (not_listed)", "add the rule: denied.test 80"}},
		{"allowed.test", 8080, allowlist.ReasonPortNotAllowed, []string{"allowed only on 80, not 8080", "add the rule: allowed.test 8080"}},
		{"plc.test", 443, allowlist.ReasonFromMismatch, []string{"not from 198.18.3.21", "add the rule: plc.test 443 from 198.18.3.21/32"}},
	} {
		t.Run(string(tc.name), func(t *testing.T) {
			e := allowlist.Explain(l, allowlist.Query{Name: tc.name, Port: tc.port, Source: src})
			if e.Reason != tc.reason {
				t.Fatalf("reason %s", e.Reason)
			}
			b := Forbidden(e, tc.name, string(tc.name), tc.port, src)
			if replyStatus(b) != 403 || !bytes.Contains(b, []byte("X-Lnm-Reason: "+string(tc.reason)+"\r\n")) {
				t.Fatalf("reply %q", b)
			}
			for _, want := range tc.text {
				if !bytes.Contains(b, []byte(want)) {
					t.Errorf("reply %q lacks %q", b, want)
				}
			}
			// The body is exactly Content-Length bytes: clients read it and stop.
			_, body, _ := bytes.Cut(b, []byte("\r\n\r\n"))
			if !bytes.Contains(b, []byte("Content-Length: "+strconv.Itoa(len(body))+"\r\n")) {
				t.Errorf("content length does not match a body of %d", len(body))
			}
		})
	}
}

func mustRule(t *testing.T, pattern string, words ...string) allowlist.Rule {
	t.Helper()
	r, err := allowlist.ParseRule(pattern, words)
	if err != nil {
		t.Fatal(err)
	}
	return r
}
