// Package adminapi is the admin API's wire contract and the client that speaks it: every path,
// every request and reply as a named type, the error body, and Client, which the CLI uses. The
// box serves it (appliance/admin*.go) on a Unix socket; this package never imports the box.
//
// A new endpoint is a Path constant with its line in the table below, its request and reply
// types here, a Client method, and a handler in the appliance.
package adminapi

import (
	"fmt"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/lnm-project/lnm/allowlist"
	"github.com/lnm-project/lnm/audit"
)

// The admin API is HTTP/1.1 with JSON on a Unix socket (`admin PATH`). Paths are versioned;
// v1 is:
//
//	GET /v1/audit?FILTER          records in seq order, JSON Lines (application/x-ndjson); the
//	                              box answers from memory and, for older records, from its
//	                              audit log files
//	GET /v1/audit/follow?FILTER   the same, live: one line per new record until the client
//	                              disconnects
//	GET /v1/status                Status as one JSON object
//	POST /v1/reload               read the config file again and apply it (422 with the
//	                              file's errors, the running config kept)
//	POST /v1/mode?mode=learn|enforce   switch mode at run time
//	GET /v1/allow                 AllowList: the running rules in match order with origin
//	                              (FILE:LINE), ports, from, to, and hits and last hit counted
//	                              over the allowed records held in memory
//	POST /v1/allow                add rules (body AllowAdd) to the managed file: validated
//	                              with the config, written, applied, audited with the caller's
//	                              uid, all under the file's lock; AllowChange, or 422 with the
//	                              reason and nothing changed
//	DELETE /v1/allow?pattern=P    remove the managed rules with pattern P; 409 when only the
//	                              config file has P ("rule P is written in FILE:LINE; edit
//	                              that file"), 404 when no rule has it
//	GET /v1/dhcp/leases           DHCPLeases: the DHCP server's leases by address; 404 when
//	                              the box serves no DHCP
//
//	POST /v1/reload and POST /v1/mode answer ReloadReply and ModeReply.
//
// FILTER is the query form of Query.Values. Errors are 4xx/5xx with an APIError body. A
// request may carry HeaderUser: the changes it asks for are recorded with that name beside
// the peer's uid.
const (
	PathAudit       = "/v1/audit"
	PathAuditFollow = "/v1/audit/follow"
	PathStatus      = "/v1/status"
	PathReload      = "/v1/reload"
	PathMode        = "/v1/mode"
	PathAllow       = "/v1/allow"
	PathDHCPLeases  = "/v1/dhcp/leases"
)

// HeaderUser names the person a request is made for, when a program on the socket (the web
// console) acts for its own signed-in users. It is at most MaxUserLen bytes of printable
// ASCII; the box refuses other values.
const (
	HeaderUser = "Lnm-User"
	MaxUserLen = 64
)

// DHCPLeases is the answer to GET /v1/dhcp/leases.
type DHCPLeases struct {
	Interface string      `json:"interface"`
	Leases    []DHCPLease `json:"leases"`
}

// DHCPLease is one lease of the box's DHCP server.
type DHCPLease struct {
	Addr    netip.Addr `json:"addr"`
	MAC     string     `json:"mac"`
	Device  string     `json:"device,omitempty"` // the host name; empty when the device has none
	State   string     `json:"state"`            // offered, bound, released or declined
	Expires time.Time  `json:"expires"`          // bound: lease end; declined: quarantine end
}

// APIError is the body of every error response.
type APIError struct {
	Error string `json:"error"`
}

// ReloadReply is the answer to POST /v1/reload: the file read and the list now running.
type ReloadReply struct {
	Config string `json:"config"`
	Hash   string `json:"hash"`
	Rules  int    `json:"rules"`
}

// ModeReply is the answer to POST /v1/mode.
type ModeReply struct {
	Learn bool `json:"learn"`
}

// Query is what GET /v1/audit selects: a filter, and optionally exact sequence numbers (the
// CLI fetches the queries that connections link to).
type Query struct {
	audit.Filter
	Seqs []uint64
}

// Values encodes a Query as URL query parameters: since, until (RFC 3339), client (an
// address or CIDR), device (a DHCP host name), origin (a device address or CIDR behind a child
// box), name (an allow-list pattern), verdict, kind,
// unlinked=1, limit, and seq (comma-separated).
func (q Query) Values() url.Values {
	v := url.Values{}
	if !q.Since.IsZero() {
		v.Set("since", q.Since.UTC().Format(time.RFC3339Nano))
	}
	if !q.Until.IsZero() {
		v.Set("until", q.Until.UTC().Format(time.RFC3339Nano))
	}
	if q.Client.IsValid() {
		v.Set("client", q.Client.String())
	}
	if q.Device != "" {
		v.Set("device", q.Device)
	}
	if q.Origin.IsValid() {
		v.Set("origin", q.Origin.String())
	}
	if q.Name != nil {
		v.Set("name", q.Name.String())
	}
	if q.Verdict != "" {
		v.Set("verdict", q.Verdict)
	}
	if q.Kind != "" {
		v.Set("kind", string(q.Kind))
	}
	if q.Unlinked {
		v.Set("unlinked", "1")
	}
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	if len(q.Seqs) > 0 {
		s := make([]string, len(q.Seqs))
		for i, n := range q.Seqs {
			s[i] = strconv.FormatUint(n, 10)
		}
		v.Set("seq", strings.Join(s, ","))
	}
	return v
}

// ParseQuery decodes Values' form. Errors name the parameter.
func ParseQuery(v url.Values) (Query, error) {
	var q Query
	var err error
	if s := v.Get("since"); s != "" {
		if q.Since, err = time.Parse(time.RFC3339Nano, s); err != nil {
			return q, fmt.Errorf("since %q: want RFC 3339 time", s)
		}
	}
	if s := v.Get("until"); s != "" {
		if q.Until, err = time.Parse(time.RFC3339Nano, s); err != nil {
			return q, fmt.Errorf("until %q: want RFC 3339 time", s)
		}
	}
	if s := v.Get("client"); s != "" {
		if q.Client, err = ParseClient(s); err != nil {
			return q, err
		}
	}
	q.Device = v.Get("device")
	if s := v.Get("origin"); s != "" {
		if q.Origin, err = ParseClient(s); err != nil {
			return q, fmt.Errorf("origin: %v", err)
		}
	}
	if s := v.Get("name"); s != "" {
		p, err := allowlist.ParsePattern(s)
		if err != nil {
			return q, fmt.Errorf("name: %v", err)
		}
		q.Name = &p
	}
	switch s := v.Get("verdict"); s {
	case "", audit.VerdictAllow, audit.VerdictDeny, audit.VerdictWouldDeny, audit.VerdictRefused:
		q.Verdict = s
	default:
		return q, fmt.Errorf("verdict %q: want allow, deny, would-deny or refused", s)
	}
	switch k := audit.Kind(v.Get("kind")); k {
	case "", audit.KindDNS, audit.KindConn, audit.KindConfig, audit.KindSummary, audit.KindDHCP:
		q.Kind = k
	default:
		return q, fmt.Errorf("kind %q: want dns, conn, config, summary or dhcp", k)
	}
	switch s := v.Get("unlinked"); s {
	case "", "0", "false":
	case "1", "true":
		q.Unlinked = true
	default:
		return q, fmt.Errorf("unlinked %q: want 1 or 0", s)
	}
	if s := v.Get("limit"); s != "" {
		if q.Limit, err = strconv.Atoi(s); err != nil || q.Limit < 0 {
			return q, fmt.Errorf("limit %q: want a whole number", s)
		}
	}
	if s := v.Get("seq"); s != "" {
		for _, f := range strings.Split(s, ",") {
			n, err := strconv.ParseUint(f, 10, 64)
			if err != nil || n == 0 {
				return q, fmt.Errorf("seq %q: want comma-separated sequence numbers", s)
			}
			q.Seqs = append(q.Seqs, n)
		}
	}
	return q, nil
}

// ParseClient reads an address (a /32 or /128) or a CIDR.
func ParseClient(s string) (netip.Prefix, error) {
	if a, err := netip.ParseAddr(s); err == nil {
		return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("client %q: want an address or CIDR", s)
	}
	return p.Masked(), nil
}

// CheckUser says whether name may be a console user's name and a HeaderUser value: 1 to
// MaxUserLen letters, digits, '.', '_', '-' or '@'.
func CheckUser(name string) error {
	if name == "" || len(name) > MaxUserLen {
		return fmt.Errorf("user name %q: want 1 to %d characters", name, MaxUserLen)
	}
	for _, c := range name {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("._-@", c)
		if !ok {
			return fmt.Errorf("user name %q: want letters, digits, '.', '_', '-' or '@'", name)
		}
	}
	return nil
}
