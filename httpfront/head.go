// Package httpfront is the front of the box's plain HTTP and CONNECT ports: it reads one
// request head within a size bound (the caller sets the deadline, as for a ClientHello), finds
// the name to decide on (the Host header or an absolute-form target on an http port, the
// host:port of a CONNECT on a connect port), rewrites the head that goes upstream so the
// connection carries one request, and writes the box's own replies (200 for an established
// tunnel, 400, 403 with the allow list's explanation, 405).
//
// It decides nothing and dials nothing: the forwarder calls it and keeps accept, limits,
// decision, dial, splice and records the same for TLS, HTTP and CONNECT.
package httpfront

import (
	"bytes"
	"cmp"
	"errors"
	"io"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"github.com/lnm-project/lnm/allowlist"
)

// MaxHeadSize is the default cap on a request head: request line, header fields and the empty
// line ending them. Device requests are a few hundred bytes; 16 KiB is the ClientHello's cap.
const MaxHeadSize = 16 << 10

// Reasons a request is refused before any decision, each the word written to the audit log.
const (
	// ReasonNotHTTP: the first bytes are not an HTTP/1.x request line (TLS on an http port,
	// HTTP/2's preface, binary, a version other than 1.0 or 1.1).
	ReasonNotHTTP allowlist.Reason = "not_http"
	// ReasonBadRequest: a request line that parses but a head that does not: a header line
	// without a colon, whitespace before the colon, obs-fold continuation lines (RFC 9112
	// §5.2, refused rather than unfolded), a control byte.
	ReasonBadRequest allowlist.Reason = "bad_request"
	// ReasonNoHost: neither a Host header nor an absolute-form target names the host.
	ReasonNoHost allowlist.Reason = "no_host"
	// ReasonBadHost: the host is not a valid name or address, there are two Host headers, or
	// the Host header disagrees with the absolute-form target (RFC 9112 §3.2).
	ReasonBadHost allowlist.Reason = "bad_host"
	// ReasonHeadTooLarge: no end of the head within the cap.
	ReasonHeadTooLarge allowlist.Reason = "request_head_too_large"
	// ReasonHeadTimeout: the deadline passed before the head was complete.
	ReasonHeadTimeout allowlist.Reason = "request_head_timeout"
	// ReasonClientClosed: the stream ended before the head was complete.
	ReasonClientClosed allowlist.Reason = "client_closed"
	// ReasonMethodNotAllowed: a method other than CONNECT on a connect port, or CONNECT on an
	// http port.
	ReasonMethodNotAllowed allowlist.Reason = "method_not_allowed"
	// ReasonSNIMismatch: the TLS ClientHello that followed a CONNECT names another host than
	// the CONNECT line did.
	ReasonSNIMismatch allowlist.Reason = "sni_mismatch"
)

// Reasons lists the reasons above, for documentation tests.
func Reasons() []allowlist.Reason {
	return []allowlist.Reason{ReasonNotHTTP, ReasonBadRequest, ReasonNoHost, ReasonBadHost, ReasonHeadTooLarge,
		ReasonHeadTimeout, ReasonMethodNotAllowed, ReasonSNIMismatch}
}

// Error is a refused request: why, and the reply to send (nil when nobody is left to tell,
// or the peer is not speaking HTTP).
type Error struct {
	Reason allowlist.Reason
	Reply  []byte
	Detail string
}

func (e *Error) Error() string {
	if e.Detail == "" {
		return "httpfront: " + string(e.Reason)
	}
	return "httpfront: " + string(e.Reason) + ": " + e.Detail
}

// Request is one parsed request head.
type Request struct {
	// Method is the request's method as sent (case-sensitive, RFC 9110 §9.1).
	Method string
	// Name is the host to decide on, normalized; empty when Addr is set.
	Name allowlist.Name
	// Addr is the host when it is an IP literal; the zero Addr when Name is set.
	Addr netip.Addr
	// Port is the port written with the host: the CONNECT target's (always set), or the Host
	// header's or absolute-form target's (zero when left out).
	Port uint16
	// Upgrade is set when the request asks to switch protocols (a WebSocket): its head goes
	// upstream unchanged and the connection becomes a tunnel to the same destination.
	Upgrade bool
	// Head is the head's length in the bytes read; what follows it is early body or
	// tunnel data.
	Head int
}

// Target is the request's host and port as one string, for records and messages.
func (r *Request) Target() string {
	host := string(r.Name)
	if r.Addr.IsValid() {
		host = r.Addr.String()
		if r.Addr.Is6() {
			host = "[" + host + "]"
		}
	}
	if r.Port == 0 {
		return host
	}
	return host + ":" + strconv.Itoa(int(r.Port))
}

// Host is the host as a name for records: Name, or Addr in text form.
func (r *Request) Host() allowlist.Name {
	if r.Addr.IsValid() {
		return allowlist.Name(r.Addr.String())
	}
	return r.Name
}

// ReadHead reads from r until a complete request head has arrived, across any number of
// reads, and parses it for a connect port (connect) or an http port. It returns every byte it
// read, even on error, so a head can be replayed; raw may run past the head but never past
// maxSize plus one read. The caller bounds the time with a read deadline; a deadline error
// becomes ReasonHeadTimeout. Every error is an *Error.
func ReadHead(r io.Reader, connect bool, maxSize int) (raw []byte, req Request, err error) {
	if maxSize <= 0 {
		maxSize = MaxHeadSize
	}
	buf := make([]byte, 0, 1024)
	scanned := 0
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, rerr := r.Read(buf[len(buf):min(cap(buf), maxSize+1)])
		buf = buf[:len(buf)+n]
		// The first bytes tell an HTTP request from TLS or binary at once, before waiting
		// for more.
		if e := checkStart(buf); e != nil {
			return buf, req, e
		}
		if end := headEnd(buf, scanned); end > 0 {
			req, err := Parse(buf[:end], connect)
			req.Head = end
			return buf, req, err
		}
		scanned = max(0, len(buf)-3)
		if len(buf) > maxSize {
			return buf, req, &Error{Reason: ReasonHeadTooLarge, Reply: Reply(400, ReasonHeadTooLarge, "request head larger than "+strconv.Itoa(maxSize)+" bytes")}
		}
		if rerr != nil {
			if errors.Is(rerr, os.ErrDeadlineExceeded) {
				return buf, req, &Error{Reason: ReasonHeadTimeout, Detail: rerr.Error()}
			}
			return buf, req, &Error{Reason: ReasonClientClosed, Detail: rerr.Error()}
		}
	}
}

// checkStart refuses a stream whose first bytes cannot begin a request line: a method is an
// RFC 9110 token, followed by a space.
func checkStart(b []byte) *Error {
	for i, c := range b {
		if c == ' ' && i > 0 {
			return nil
		}
		if !tokenByte(c) || i >= 32 {
			return &Error{Reason: ReasonNotHTTP}
		}
	}
	return nil
}

// headEnd returns the length of the head (through its empty line) if b holds one, else 0.
// Lines may end in CRLF or a bare LF (RFC 9112 §2.2 lets a recipient accept LF).
func headEnd(b []byte, from int) int {
	for i := from; i < len(b); i++ {
		if b[i] != '\n' {
			continue
		}
		if i+1 < len(b) && b[i+1] == '\n' {
			return i + 2
		}
		if i+2 < len(b) && b[i+1] == '\r' && b[i+2] == '\n' {
			return i + 3
		}
	}
	return 0
}

// Parse parses a complete head (through its empty line) for a connect port (connect) or an
// http port. Every error is an *Error carrying its reply.
func Parse(head []byte, connect bool) (Request, error) {
	var req Request
	lines := splitLines(head)
	if len(lines) == 0 {
		return req, &Error{Reason: ReasonNotHTTP}
	}
	method, target, version, ok := requestLine(lines[0])
	if !ok {
		return req, &Error{Reason: ReasonNotHTTP}
	}
	req.Method = method
	if version != "HTTP/1.1" && version != "HTTP/1.0" {
		return req, &Error{Reason: ReasonNotHTTP, Detail: "version " + version}
	}
	if (method == "CONNECT") != connect {
		msg := "this port is an HTTP proxy for CONNECT only"
		if !connect {
			msg = "this port forwards plain HTTP by Host; CONNECT is served on the box's connect port"
		}
		return req, &Error{Reason: ReasonMethodNotAllowed, Reply: Reply(405, ReasonMethodNotAllowed, msg, "Allow: CONNECT")}
	}
	var hosts []string
	for _, l := range lines[1:] {
		name, value, err := field(l)
		if err != nil {
			return req, err
		}
		switch {
		case strings.EqualFold(name, "Host"):
			hosts = append(hosts, value)
		case strings.EqualFold(name, "Connection") && hasToken(value, "upgrade"):
			req.Upgrade = true
		}
	}
	if len(hosts) > 1 {
		return req, badHost("two Host headers")
	}
	if connect {
		// authority-form (RFC 9112 §3.2.3): host and port, nothing else; the Host header
		// says nothing more and is not checked.
		if err := req.setHost(target, true); err != nil {
			return req, err
		}
		return req, nil
	}
	if rest, ok := cutPrefixFold(target, "http://"); ok {
		// absolute-form (RFC 9112 §3.2.2): the target's authority is the host; a Host
		// header must agree, so that no server behind the box reads another.
		authority, _, _ := strings.Cut(rest, "/")
		authority, _, _ = strings.Cut(authority, "?")
		if strings.Contains(authority, "@") {
			return req, badHost("userinfo in the request target")
		}
		if err := req.setHost(authority, false); err != nil {
			return req, err
		}
		if len(hosts) == 1 {
			var h Request
			if err := h.setHost(hosts[0], false); err != nil || h.Name != req.Name || h.Addr != req.Addr || cmp.Or(h.Port, 80) != cmp.Or(req.Port, 80) {
				return req, badHost("Host " + strconv.Quote(hosts[0]) + " disagrees with the request target")
			}
		}
		return req, nil
	}
	if !strings.HasPrefix(target, "/") && !(target == "*" && method == "OPTIONS") {
		return req, &Error{Reason: ReasonBadRequest, Reply: Reply(400, ReasonBadRequest, "request target must be a path or an http:// URL")}
	}
	if len(hosts) == 0 {
		return req, &Error{Reason: ReasonNoHost, Reply: Reply(400, ReasonNoHost, "the request has no Host header")}
	}
	return req, req.setHost(hosts[0], false)
}

// splitLines splits a head (through its empty line, as headEnd found it) into its lines,
// each without its one LF and at most one CR before it, dropping the empty line. A stray CR
// left in a line is refused there as a control byte, also in the last line: Forward keeps
// the line as it came, so the server must not be sent a line lnm read otherwise.
func splitLines(head []byte) []string {
	lines := strings.Split(string(head), "\n")
	if len(lines) < 3 { // no request line: at most the empty line
		return nil
	}
	lines = lines[:len(lines)-2] // what follows the last LF, and the empty line
	for i, l := range lines {
		lines[i] = strings.TrimSuffix(l, "\r")
	}
	return lines
}

// requestLine splits "METHOD SP TARGET SP VERSION" with single spaces (RFC 9112 §3).
func requestLine(l string) (method, target, version string, ok bool) {
	method, rest, ok1 := strings.Cut(l, " ")
	target, version, ok2 := strings.Cut(rest, " ")
	if !ok1 || !ok2 || method == "" || target == "" || strings.ContainsAny(target, " \t") {
		return "", "", "", false
	}
	for i := 0; i < len(method); i++ {
		if !tokenByte(method[i]) {
			return "", "", "", false
		}
	}
	for i := 0; i < len(target); i++ {
		if target[i] <= ' ' || target[i] == 0x7f {
			return "", "", "", false
		}
	}
	return method, target, version, true
}

// field parses one header line "name: value" (RFC 9112 §5).
func field(l string) (name, value string, err *Error) {
	if l == "" {
		return "", "", bad("empty header line")
	}
	if l[0] == ' ' || l[0] == '\t' {
		return "", "", bad("obs-fold continuation line")
	}
	name, value, ok := strings.Cut(l, ":")
	if !ok {
		return "", "", bad("header line without a colon")
	}
	for i := 0; i < len(name); i++ {
		if !tokenByte(name[i]) {
			return "", "", bad("header name " + strconv.Quote(name) + " is not a token")
		}
	}
	for i := 0; i < len(value); i++ {
		if c := value[i]; (c < ' ' && c != '\t') || c == 0x7f {
			return "", "", bad("control byte in header " + name)
		}
	}
	return name, strings.Trim(value, " \t"), nil
}

func bad(detail string) *Error {
	return &Error{Reason: ReasonBadRequest, Detail: detail, Reply: Reply(400, ReasonBadRequest, detail)}
}

func badHost(detail string) *Error {
	return &Error{Reason: ReasonBadHost, Detail: detail, Reply: Reply(400, ReasonBadHost, detail)}
}

// setHost parses "host[:port]", "[v6]:port" or "v4:port"; needPort for a CONNECT target.
// A Unicode name is converted to punycode as in rules.
func (r *Request) setHost(s string, needPort bool) error {
	host, port := s, ""
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return badHost("unclosed [ in " + strconv.Quote(s))
		}
		host, port = s[1:end], s[end+1:]
		if port != "" && port[0] != ':' {
			return badHost("junk after ] in " + strconv.Quote(s))
		}
		a, err := netip.ParseAddr(host)
		if err != nil || !a.Is6() || a.Zone() != "" {
			return badHost(strconv.Quote(host) + " is not an IPv6 address")
		}
		r.Addr = a
		port = strings.TrimPrefix(port, ":")
	} else {
		if i := strings.LastIndexByte(s, ':'); i >= 0 {
			host, port = s[:i], s[i+1:]
		}
		if a, err := netip.ParseAddr(host); err == nil {
			if !a.Is4() {
				return badHost("an IPv6 address must be written in brackets")
			}
			r.Addr = a
		} else {
			n, err := allowlist.ParseUnicodeName(host)
			if err != nil {
				return badHost(err.Error())
			}
			r.Name = n
		}
	}
	switch {
	case port == "" && needPort:
		return badHost("CONNECT needs host:port, got " + strconv.Quote(s))
	case port == "" && strings.HasSuffix(s, ":"):
		return badHost("empty port in " + strconv.Quote(s))
	case port != "":
		p, err := allowlist.ParsePort(port)
		if err != nil {
			return badHost(err.Error())
		}
		r.Port = p
	}
	return nil
}

// Forward is the head as it goes upstream: the request unchanged, except that unless it asks
// for an upgrade its Connection, Keep-Alive and Proxy-Connection fields are replaced by
// "Connection: close". The box decides once per connection, on its first request: the server
// then closes after answering it, so a second request (for another Host) is never served on
// a stream decided for the first.
func Forward(head []byte, req *Request) []byte {
	if req.Upgrade {
		return head
	}
	out := make([]byte, 0, len(head)+19)
	rest := head
	first := true
	for len(rest) > 0 {
		i := bytes.IndexByte(rest, '\n')
		line := rest[:i+1]
		rest = rest[i+1:]
		text := bytes.TrimRight(line, "\r\n")
		if len(text) == 0 { // the empty line ending the head
			out = append(out, "Connection: close\r\n"...)
			out = append(out, line...)
			break
		}
		if !first {
			name, _, _ := bytes.Cut(text, []byte{':'})
			if hopByHop(string(name)) {
				continue
			}
		}
		first = false
		out = append(out, line...)
	}
	return out
}

func hopByHop(name string) bool {
	return strings.EqualFold(name, "Connection") || strings.EqualFold(name, "Keep-Alive") || strings.EqualFold(name, "Proxy-Connection")
}

// hasToken reports whether a comma-separated field value lists token, case-insensitively.
func hasToken(v, token string) bool {
	for t := range strings.SplitSeq(v, ",") {
		if strings.EqualFold(strings.Trim(t, " \t"), token) {
			return true
		}
	}
	return false
}

func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix) {
		return s[len(prefix):], true
	}
	return s, false
}

// tokenByte reports whether c may appear in an RFC 9110 token (methods, field names).
func tokenByte(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}
