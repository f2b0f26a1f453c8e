package adminapi

import "time"

// Status is the body of GET /v1/status.
type Status struct {
	Box       string        `json:"box"`
	Level     int           `json:"level"`
	Version   string        `json:"version"`
	Config    string        `json:"config"`
	Started   time.Time     `json:"started"`
	UptimeS   int64         `json:"uptime_s"`
	Mode      string        `json:"mode"` // enforce or learn
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
	Proto string `json:"proto"` // dns/udp+tcp, proxy, tcp-route, admin, metrics
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
