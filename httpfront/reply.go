package httpfront

import (
	"fmt"
	"net/http"
	"net/netip"
	"strconv"
	"strings"

	"github.com/lnm-project/lnm/allowlist"
)

// Established is the reply to an allowed CONNECT; the tunnel's bytes follow it.
var Established = []byte("HTTP/1.1 200 Connection established\r\n\r\n")

// Reply is a complete response the box sends before closing: the status, the audit reason in
// an X-Lnm-Reason header (so scripts need not parse the text), and one line of text.
func Reply(status int, reason allowlist.Reason, text string, headers ...string) []byte {
	body := "lnm: " + text + "\n"
	var b strings.Builder
	fmt.Fprintf(&b, "HTTP/1.1 %d %s\r\n", status, http.StatusText(status))
	b.WriteString("Content-Type: text/plain; charset=utf-8\r\n")
	b.WriteString("Content-Length: " + strconv.Itoa(len(body)) + "\r\n")
	b.WriteString("Connection: close\r\n")
	if reason != "" {
		b.WriteString("X-Lnm-Reason: " + string(reason) + "\r\n")
	}
	for _, h := range headers {
		b.WriteString(h + "\r\n")
	}
	b.WriteString("\r\n")
	b.WriteString(body)
	return []byte(b.String())
}

// Forbidden is the 403 for a request the list denies: the verdict's reason, the one-line
// explanation `lnm allow test` gives (the nearest rule and why it did not match), and the
// rule the operator would add. target is what the device asked for ("name" or "name:port"),
// port the port decided on.
func Forbidden(e allowlist.Explanation, name allowlist.Name, target string, port uint16, src netip.Addr) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "%s is denied (%s)", target, e.Reason)
	if e.Why != "" {
		b.WriteString(": " + e.Why)
	}
	if add := Suggest(e, name, port, src); add != "" {
		b.WriteString("; to allow it, add the rule: " + add)
	}
	return Reply(403, e.Reason, b.String())
}

// Suggest is the rule that would allow what e denied: the name on that port, from that
// device when the list's rules for it are narrowed to other devices. Empty when there is
// no name (an address, a refused source).
func Suggest(e allowlist.Explanation, name allowlist.Name, port uint16, src netip.Addr) string {
	if name == "" || e.Reason == allowlist.ReasonSourceNotAllowed {
		return ""
	}
	rule := string(name)
	if port != 0 {
		rule += " " + strconv.Itoa(int(port))
	}
	if e.Reason == allowlist.ReasonFromMismatch && src.IsValid() {
		rule += " from " + netip.PrefixFrom(src.Unmap(), src.Unmap().BitLen()).String()
	}
	return rule
}

// AddrForbidden is the 403 for an IP-literal host no rule's `to` names.
func AddrForbidden(target string) []byte {
	return Reply(403, allowlist.ReasonNotListed, target+" is an address: a device may reach an address only when a rule's `to` names it; connect by name instead")
}

// Denied is the reply to a request the list denies: Forbidden with the list's explanation
// for a name decided on port, AddrForbidden for an address.
func Denied(l *allowlist.List, req *Request, port uint16, src netip.Addr) []byte {
	if req.Name == "" {
		return AddrForbidden(req.Target())
	}
	e := allowlist.Explain(l, allowlist.Query{Name: req.Name, Port: port, Source: src})
	return Forbidden(e, req.Name, req.Target(), port, src)
}
