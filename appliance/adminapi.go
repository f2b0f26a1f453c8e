package appliance

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
//
// FILTER is the query form of FilterValues. Errors are 4xx/5xx with an APIError body.
const (
	PathAudit       = "/v1/audit"
	PathAuditFollow = "/v1/audit/follow"
	PathStatus      = "/v1/status"
	PathReload      = "/v1/reload"
	PathMode        = "/v1/mode"
	PathAllow       = "/v1/allow"
)

// APIError is the body of every error response.
type APIError struct {
	Error string `json:"error"`
}

// Query is what GET /v1/audit selects: a filter, and optionally exact sequence numbers (the
// CLI fetches the queries that connections link to).
type Query struct {
	audit.Filter
	Seqs []uint64
}

// Values encodes a Query as URL query parameters: since, until (RFC 3339), client (an
// address or CIDR), name (an allow-list pattern), verdict, kind, unlinked=1, limit, and seq
// (comma-separated).
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
	case "", audit.KindDNS, audit.KindConn, audit.KindConfig, audit.KindSummary:
		q.Kind = k
	default:
		return q, fmt.Errorf("kind %q: want dns, conn, config or summary", k)
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

// Status is the body of GET /v1/status.
type Status struct {
	Box       string        `json:"box"`
	Level     int           `json:"level"`
	Version   string        `json:"version"`
	Config    string        `json:"config"`
	Started   time.Time     `json:"started"`
	UptimeS   int64         `json:"uptime_s"`
	Mode      string        `json:"mode"` // enforce (learn mode comes with allow-list operations)
	Parent    *ParentStatus `json:"parent,omitempty"`
	Listeners []Listener    `json:"listeners"`
	Rules     int           `json:"rules"`
	Counters  Counters      `json:"counters"`
	Active    int64         `json:"active_connections"`
	// TopClients and TopNames count the records of the last hour held in memory.
	TopClients []Count     `json:"top_clients"`
	TopNames   []Count     `json:"top_names"`
	Audit      AuditStatus `json:"audit"`
	Store      StoreStatus `json:"store"`
}

// ParentStatus says whether the box one level up answers on its first proxy port.
type ParentStatus struct {
	Addr      string `json:"addr"`
	Reachable bool   `json:"reachable"`
	Error     string `json:"error,omitempty"`
	RTTMS     int64  `json:"rtt_ms,omitempty"`
}

// Listener is one bound socket.
type Listener struct {
	Proto string `json:"proto"` // dns/udp, dns/tcp, proxy, tcp-route
	Addr  string `json:"addr"`
}

// Counters count decisions since start.
type Counters struct {
	DNSQueries uint64 `json:"dns_queries"`
	DNSDenied  uint64 `json:"dns_denied"`
	// DNSRateLimited counts UDP queries over a client's rate limit: not answered, or
	// answered empty with TC, and summarized in the audit log rather than recorded. It
	// grows with the summaries, every 10 seconds while a client is limited.
	DNSRateLimited uint64 `json:"dns_rate_limited"`
	Conns          uint64 `json:"connections"`
	ConnsDenied    uint64 `json:"connections_denied"`
	BytesUp        uint64 `json:"bytes_up"`
	BytesDown      uint64 `json:"bytes_down"`
}

// Count is a name or client with how often it was seen.
type Count struct {
	Key   string `json:"key"`
	Count int    `json:"count"`
}

// AuditStatus is the audit log's health.
type AuditStatus struct {
	Dir      string `json:"dir"` // empty: audit off, records in memory only
	Healthy  bool   `json:"healthy"`
	Error    string `json:"error,omitempty"`
	Queue    int    `json:"queue"`
	LastSeq  uint64 `json:"last_seq"`
	Written  uint64 `json:"written"`
	Refused  uint64 `json:"refused_while_failing"`
	FailOpen bool   `json:"fail_open"`
}

// StoreStatus is the in-memory store's size.
type StoreStatus struct {
	Records int       `json:"records"`
	Bytes   int64     `json:"bytes"`
	Oldest  time.Time `json:"oldest"`
}
