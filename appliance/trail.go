package appliance

import (
	"crypto/sha256"
	"encoding/hex"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"

	"github.com/lnm-project/lnm/allowlist"
	"github.com/lnm-project/lnm/audit"
	"github.com/lnm-project/lnm/forwarder"
	"github.com/lnm-project/lnm/resolver"
	"github.com/lnm-project/lnm/store"
)

// trail turns resolver and forwarder events into audit records: it stamps them with the box,
// links connections to the queries that led to them, numbers them through the audit log,
// keeps them in the store, and counts them in the metrics. Its error tells a data path that
// the decision must not proceed (fail closed).
type trail struct {
	box      string
	level    int
	log      *audit.Log // nil: audit off, records numbered here and kept in memory only
	seq      atomic.Uint64
	store    *store.Store
	failOpen bool
	metrics  *boxMetrics
	children []netip.Prefix // boxes one level down: their connections are not linked here
	rules    ruleTexts
	// devices names leased clients (setDevices); nil: the box serves no DHCP.
	devices atomic.Pointer[map[netip.Addr]device]
}

// maxRuleTexts bounds ruleTexts: past it, the cache starts again from empty.
const maxRuleTexts = 4096

// ruleTexts caches ruleText by rule. The text is the same for every query a rule decides,
// and building it cost an allocation per query. A rule in a list is never modified, and the
// cache holds the rule, so its address cannot be reused for another while cached. Reloads
// make new rules, so the cache is emptied when it grows past maxRuleTexts. The zero value
// is an empty cache.
type ruleTexts struct {
	m sync.Map // *allowlist.Rule → string
	n atomic.Int64
}

func (c *ruleTexts) text(r *allowlist.Rule) string {
	if r == nil {
		return ""
	}
	if s, ok := c.m.Load(r); ok {
		return s.(string)
	}
	s := ruleText(r)
	if c.n.Add(1) > maxRuleTexts {
		c.m.Clear()
		c.n.Store(1)
	}
	c.m.Store(r, s)
	return s
}

// record links, numbers and keeps one record. It returns an error only when the record could
// not be written durably and the box fails closed.
//
// It runs on the DNS and connection paths, so nothing here waits for the store: Link reads
// the store's link index, and Add only queues a copy (the store's own goroutine inserts in
// batches, and may drop under overload, counting it: the log has every record).
func (t *trail) record(r *audit.Record) error {
	r.Box, r.Level = t.box, t.level
	t.nameDevice(r)
	if r.Time.IsZero() {
		r.Time = time.Now()
	}
	if r.Kind == audit.KindConn && r.SNI != "" && !t.fromChild(r) {
		t.store.Link(r)
	}
	if t.log == nil {
		r.Seq = t.seq.Add(1)
		t.store.Add(r)
		return nil
	}
	if err := t.log.Append(r); err != nil {
		if t.failOpen {
			return nil // the log counts what it refused and writes a summary when it recovers
		}
		return err
	}
	// The log owns r now and its writer may be encoding it; Add only reads r too.
	t.store.Add(r)
	return nil
}

// flush is the resolver's Flush hook: the records of the answers about to leave reach the
// kernel first (audit.Log.Flush), so a crash of the process loses none a client saw. With
// on_audit_failure allow a failing log does not hold answers back.
func (t *trail) flush() error {
	if t.log == nil {
		return nil
	}
	if err := t.log.Flush(); err != nil && !t.failOpen {
		return err
	}
	return nil
}

// fromChild reports whether a record's client is a box one level down.
func (t *trail) fromChild(r *audit.Record) bool {
	return allowlist.Prefixes(t.children).Contains(r.Client.Addr())
}

// onQuery is the resolver's OnQuery hook.
func (t *trail) onQuery(ev resolver.QueryEvent) error {
	r := &audit.Record{
		Time:    ev.Time,
		Kind:    audit.KindDNS,
		Client:  ev.Client,
		Name:    string(ev.Name),
		QType:   qtypeText(ev.Type),
		Verdict: dnsVerdict(ev.Verdict),
		Reason:  string(ev.Reason),
		Rule:    t.rules.text(ev.Rule),
		Rcode:   rcodeText(ev.Rcode),
		Answer:  slices.Clip(ev.Answers), // clipped, the store holds r as it is
	}
	if r.Name == "" {
		r.Name = strings.TrimSuffix(ev.QName, ".") // not a host name: kept as sent, escaped on output
	}
	t.metrics.query(r.QType, r.Verdict)
	return t.record(r)
}

// The reasons of the summary records the trail writes, the ones it adds to the resolver's,
// the forwarder's and the log's own: count is how many, time the last of them.
const (
	// ReasonDNSRateLimited: UDP queries a client sent over its rate limit (dns_rate_limit).
	ReasonDNSRateLimited = "dns_rate_limited"
	// ReasonDNSTCPLimited: DNS TCP connections closed at once, the client holding
	// dns_tcp_per_source already.
	ReasonDNSTCPLimited = "dns_tcp_limited"
	// ReasonConnLimited: connections of a device that a limit closed, or that never sent a
	// ClientHello, past the first few of the period, which have a deny record each.
	ReasonConnLimited = "conn_limited"
)

// SummaryReasons lists the reasons above, for documentation tests.
func SummaryReasons() []string {
	return []string{ReasonDNSRateLimited, ReasonDNSTCPLimited, ReasonConnLimited}
}

// onLimited is the resolver's OnLimited hook: one summary record per client, limit and
// period, never one per packet or connection.
func (t *trail) onLimited(ev resolver.LimitEvent) {
	if n := ev.Dropped + ev.Slipped; n > 0 {
		t.metrics.limited(ev.Slipped, ev.Dropped)
		t.summary(ev.Client, ev.Until, ReasonDNSRateLimited, n)
	}
	if ev.TCPRefused > 0 {
		t.summary(ev.Client, ev.Until, ReasonDNSTCPLimited, ev.TCPRefused)
	}
}

// onConnLimited is the forwarders' OnLimited hook.
func (t *trail) onConnLimited(ev forwarder.LimitEvent) {
	t.summary(ev.Client, ev.Until, ReasonConnLimited, ev.Count)
}

func (t *trail) summary(client netip.Addr, at time.Time, reason string, count uint64) {
	r := &audit.Record{Time: at, Kind: audit.KindSummary, Client: netip.AddrPortFrom(client, 0), Reason: reason, Count: count}
	// A failing log counts what it refuses in its own summary; nothing else to do here.
	_ = t.record(r)
}

// onConn is the forwarder's OnEvent hook.
func (t *trail) onConn(ev forwarder.Event) error {
	r := &audit.Record{
		Time:     ev.Time,
		Kind:     audit.KindConn,
		Event:    string(ev.Kind),
		ID:       ev.ID,
		Client:   ev.Client,
		Port:     ev.Port,
		SNI:      string(ev.SNI),
		ALPN:     slices.Clip(ev.ALPN),
		Verdict:  connVerdict(ev.Verdict),
		Rule:     t.rules.text(ev.Rule),
		Reason:   string(ev.Reason),
		Upstream: ev.Upstream,
		Via:      string(ev.Via),
	}
	if ev.Proto != forwarder.FrontTLS {
		r.Proto = ev.Proto.String()
	}
	if ev.Kind == forwarder.EventClose {
		r.BytesUp, r.BytesDown, r.DurationMS = ev.BytesUp, ev.BytesDown, ev.Duration.Milliseconds()
	}
	if ev.ECH {
		r.Flags = []string{audit.FlagECH}
	}
	if o := ev.Origin; o.Hops > 0 {
		r.Origin = &audit.Origin{Device: o.Device, Path: o.Path, ID: o.ID}
	}
	t.metrics.conn(ev)
	return t.record(r)
}

// configChange records a change of the running configuration.
func (t *trail) configChange(change, hash string, who Caller) error {
	return t.record(&audit.Record{Kind: audit.KindConfig, Change: change, Hash: hash, UID: who.UID, User: who.User})
}

// listHash names a rule set: the first 16 hex digits of the SHA-256 of its rules in match
// order, one per line. The same rules give the same hash on every box.
func listHash(l *allowlist.List) string {
	h := sha256.New()
	for _, r := range l.Ordered() {
		h.Write([]byte(r.String()))
		h.Write([]byte{'\n'})
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

func ruleText(r *allowlist.Rule) string {
	if r == nil {
		return ""
	}
	if r.Origin == "" {
		return r.String()
	}
	return r.String() + " (" + r.Origin + ")"
}

// qtypeNames and rcodeNames are miekg/dns's names for the common codes, in arrays: these
// run for every query, and an array index costs less than the library's map lookup.
var (
	qtypeNames [256]string
	rcodeNames [24]string
)

func init() {
	for t, s := range dns.TypeToString {
		if int(t) < len(qtypeNames) {
			qtypeNames[t] = s
		}
	}
	for rc, s := range dns.RcodeToString {
		if rc >= 0 && rc < len(rcodeNames) {
			rcodeNames[rc] = s
		}
	}
}

func qtypeText(t uint16) string {
	if int(t) < len(qtypeNames) && qtypeNames[t] != "" {
		return qtypeNames[t]
	}
	if s, ok := dns.TypeToString[t]; ok {
		return s
	}
	return "TYPE" + strconv.Itoa(int(t))
}

func rcodeText(rc int) string {
	if rc >= 0 && rc < len(rcodeNames) && rcodeNames[rc] != "" {
		return rcodeNames[rc]
	}
	if s, ok := dns.RcodeToString[rc]; ok {
		return s
	}
	return "RCODE" + strconv.Itoa(rc)
}

// dnsVerdict maps the resolver's verdicts onto the audit schema's: relayed stub-zone answers
// are allowed, protocol errors denied (their reason says which).
func dnsVerdict(v resolver.Verdict) string {
	switch v {
	case resolver.VerdictAllow, resolver.VerdictZone:
		return audit.VerdictAllow
	case resolver.VerdictRefused:
		return audit.VerdictRefused
	case resolver.VerdictWouldDeny:
		return audit.VerdictWouldDeny
	}
	return audit.VerdictDeny
}

// connVerdict maps the forwarder's verdicts onto the audit schema's.
func connVerdict(v forwarder.Verdict) string {
	switch v {
	case forwarder.VerdictAllow:
		return audit.VerdictAllow
	case forwarder.VerdictWouldDeny:
		return audit.VerdictWouldDeny
	}
	return audit.VerdictDeny
}
