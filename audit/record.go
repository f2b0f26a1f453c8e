// Package audit keeps lnm's records durably: an append-only log of JSON Lines segments with
// group-commit fsync, rotation by rename, retention, and a reader that filters old records and
// skips a torn last line. The record schema defined here is a public interface (see
// docs/audit-records.md): fields are added, never renamed.
//
// The package stores and filters records; it does not know how DNS or TLS produce them.
package audit

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strconv"
	"time"
	"unicode/utf8"
)

// Kind is what a record describes.
type Kind string

const (
	KindDNS     Kind = "dns"     // one answered DNS question
	KindConn    Kind = "conn"    // a connection opened, closed, or denied
	KindConfig  Kind = "config"  // a configuration change (start, reload, allow-list edit)
	KindSummary Kind = "summary" // a count standing for many suppressed records (floods)
	KindDHCP    Kind = "dhcp"    // a lease event of the box's DHCP server
)

// Conn events.
const (
	EventOpen  = "open"
	EventClose = "close"
	EventDeny  = "deny"
)

// Verdicts.
const (
	VerdictAllow     = "allow"
	VerdictDeny      = "deny"
	VerdictWouldDeny = "would-deny" // learn mode: denied by the list, let through
	VerdictRefused   = "refused"
)

// Verdicts lists every verdict, for documentation tests.
func Verdicts() []string {
	return []string{VerdictAllow, VerdictDeny, VerdictWouldDeny, VerdictRefused}
}

// Proto values of connection records that did not come through a TLS port.
const (
	ProtoHTTP    = "http"    // a plain HTTP port, decided on the Host
	ProtoConnect = "connect" // a CONNECT proxy port, decided on the CONNECT's target
)

// Flags on connection records. They are findings, not errors.
const (
	// FlagUnlinked: no DNS query from this client for this name within the link window; the
	// device resolved elsewhere or has an address baked in.
	FlagUnlinked = "unlinked"
	// FlagSNIMismatch: the client's recent queries were for other names (connection
	// coalescing, or domain fronting).
	FlagSNIMismatch = "sni_mismatch"
	// FlagECH: the hello carried an encrypted_client_hello extension; the box decided on
	// its outer SNI (the inner name is encrypted to the server), as every TLS-inspecting
	// proxy must.
	FlagECH = "ech"
)

// Record is one audit record. Which fields are set depends on Kind; the zero value of every
// field means "absent" and is left out of the JSON form, except the byte counts and duration
// of a conn close, which are always written.
type Record struct {
	Seq   uint64    // assigned by the log; continues across restarts and files
	Time  time.Time // written as RFC 3339 UTC with milliseconds
	Box   string
	Level int
	Kind  Kind

	// dns and conn. For dns, Client carries no port.
	Client netip.AddrPort
	// Device and MAC name the client: the host name and hardware address of the DHCP lease
	// that holds its address. Empty when the box gave it no lease. The log only stores them.
	Device string
	MAC    string

	Verdict string
	Rule    string // the deciding rule as written, "PATTERN ... (FILE:LINE)"
	Reason  string

	// dns
	Name   string // the question name, normalized (lower case, no trailing dot)
	QType  string // "A", "AAAA", "HTTPS", "TYPE1000"
	Rcode  string // "NOERROR", "NXDOMAIN", "REFUSED", …
	Answer []netip.Addr

	// conn
	Event    string // open, close, deny
	ID       uint64 // the connection's id, shared by its open and close records
	Port     uint16 // the port the device connected to
	Proto    string // ProtoHTTP or ProtoConnect; empty: TLS (or a tcp route)
	SNI      string // the name decided on: the SNI, an HTTP Host, a CONNECT's host
	ALPN     []string
	Upstream netip.AddrPort
	Via      string // parent, direct, to, tcp
	QuerySeq uint64 // seq of the linked dns record; 0: not linked
	// Origin is what a child box said about the connection (level identity): the device
	// behind it. Nil: it came straight from Client, or from a child that said nothing.
	Origin     *Origin
	Flags      []string
	BytesUp    int64 // close only: bytes from the device
	BytesDown  int64 // close only: bytes to the device
	DurationMS int64 // close only

	// config
	Change string
	Hash   string
	UID    *int   // the unix uid that asked for the change; nil: the box itself (start, SIGHUP)
	User   string // the console user who asked for the change; empty: not through the console

	// summary
	Count uint64 // how many records this summary stands for
}

// Origin is where a connection recorded at a parent box began, as the child box told it in
// its level-identity header: the device that opened it, the boxes it passed, and its id at
// the last of them (the child's open and close records carry it as "id"), by which `lnm
// audit trace` finds it in the child's log.
type Origin struct {
	Device netip.AddrPort // the device's address and port at the first box
	Path   []string       // the boxes it passed, the first box first; never empty
	ID     uint64         // its connection id at Path's last box
}

// timeLayout is RFC 3339 with exactly three fractional digits, in UTC. appendTime writes it by
// hand; AppendFormat with it is the fallback for years outside 0000–9999.
const timeLayout = "2006-01-02T15:04:05.000Z07:00"

// AppendJSON appends the record as one JSON object (no newline) in the documented field order.
// It is the hot path of the log and allocates nothing beyond growing b.
func (r *Record) AppendJSON(b []byte) []byte {
	b = append(b, `{"seq":`...)
	b = strconv.AppendUint(b, r.Seq, 10)
	b = append(b, `,"time":"`...)
	b = appendTime(b, r.Time)
	b = append(b, '"')
	b = appendField(b, `,"box":`, r.Box)
	b = append(b, `,"level":`...)
	b = strconv.AppendInt(b, int64(r.Level), 10)
	b = appendField(b, `,"kind":`, string(r.Kind))
	if r.Client.IsValid() {
		b = append(b, `,"client":"`...)
		if r.Kind == KindDNS || r.Client.Port() == 0 {
			b = r.Client.Addr().AppendTo(b)
		} else {
			b = r.Client.AppendTo(b)
		}
		b = append(b, '"')
	}
	b = appendField(b, `,"device":`, r.Device)
	b = appendField(b, `,"mac":`, r.MAC)
	b = appendField(b, `,"event":`, r.Event)
	if r.ID != 0 {
		b = append(b, `,"id":`...)
		b = strconv.AppendUint(b, r.ID, 10)
	}
	b = appendField(b, `,"name":`, r.Name)
	b = appendField(b, `,"qtype":`, r.QType)
	if r.Port != 0 {
		b = append(b, `,"port":`...)
		b = strconv.AppendUint(b, uint64(r.Port), 10)
	}
	b = appendField(b, `,"proto":`, r.Proto)
	b = appendField(b, `,"sni":`, r.SNI)
	b = appendStrings(b, "alpn", r.ALPN)
	b = appendField(b, `,"verdict":`, r.Verdict)
	b = appendField(b, `,"rule":`, r.Rule)
	b = appendField(b, `,"reason":`, r.Reason)
	b = appendField(b, `,"rcode":`, r.Rcode)
	if r.Answer != nil {
		b = append(b, `,"answer":[`...)
		for i, a := range r.Answer {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, '"')
			b = a.AppendTo(b)
			b = append(b, '"')
		}
		b = append(b, ']')
	}
	if r.Upstream.IsValid() {
		b = append(b, `,"upstream":"`...)
		b = r.Upstream.AppendTo(b)
		b = append(b, '"')
	}
	b = appendField(b, `,"via":`, r.Via)
	if r.QuerySeq != 0 {
		b = append(b, `,"query_seq":`...)
		b = strconv.AppendUint(b, r.QuerySeq, 10)
	}
	b = appendStrings(b, "flags", r.Flags)
	if o := r.Origin; o != nil {
		b = append(b, `,"origin":{"device":"`...)
		b = o.Device.AppendTo(b)
		b = append(b, '"')
		b = appendStrings(b, "path", o.Path)
		b = append(b, `,"id":`...)
		b = strconv.AppendUint(b, o.ID, 10)
		b = append(b, '}')
	}
	if r.Kind == KindConn && r.Event == EventClose {
		b = append(b, `,"bytes_up":`...)
		b = strconv.AppendInt(b, r.BytesUp, 10)
		b = append(b, `,"bytes_down":`...)
		b = strconv.AppendInt(b, r.BytesDown, 10)
		b = append(b, `,"duration_ms":`...)
		b = strconv.AppendInt(b, r.DurationMS, 10)
	}
	b = appendField(b, `,"change":`, r.Change)
	b = appendField(b, `,"hash":`, r.Hash)
	if r.UID != nil {
		b = append(b, `,"uid":`...)
		b = strconv.AppendInt(b, int64(*r.UID), 10)
	}
	b = appendField(b, `,"user":`, r.User)
	if r.Count != 0 {
		b = append(b, `,"count":`...)
		b = strconv.AppendUint(b, r.Count, 10)
	}
	return append(b, '}')
}

// MarshalJSON returns AppendJSON's form.
func (r Record) MarshalJSON() ([]byte, error) { return r.AppendJSON(nil), nil }

// appendTime appends t exactly as t.UTC().AppendFormat(b, timeLayout) does: UTC, "Z", three
// fractional digits truncated (not rounded). Years 0000–9999, which are all a log holds, are
// written by hand; AppendFormat would spend most of its time walking the layout.
func appendTime(b []byte, t time.Time) []byte {
	const (
		minSec = -62167219200 // 0000-01-01T00:00:00Z
		maxSec = 253402300800 // 10000-01-01T00:00:00Z
	)
	sec := t.Unix()
	if sec < minSec || sec >= maxSec {
		return t.UTC().AppendFormat(b, timeLayout)
	}
	s := uint64(sec - minSec)
	days, sod := s/86400, s%86400

	// The civil date of a day count (H. Hinnant, "chrono-Compatible Low-Level Date
	// Algorithms"), with years starting on 1 March. z counts days from 0000-03-01 plus one
	// 400-year era, so that January and February of year 0 are not negative.
	const era = 146097 // days in 400 years
	z := days - 60 + era
	n := z / era
	doe := z - n*era                                       // day of the era, [0, 146096]
	yoe := (doe - doe/1460 + doe/36524 - doe/146096) / 365 // year of the era, [0, 399]
	doy := doe - (365*yoe + yoe/4 - yoe/100)               // day of the March year, [0, 365]
	mp := (5*doy + 2) / 153                                // month from March, [0, 11]
	day := doy - (153*mp+2)/5 + 1
	month, year := mp+3, yoe+n*400
	if month > 12 {
		month -= 12
		year++
	}
	year -= 400

	ms := uint64(t.Nanosecond()) / 1e6
	hh, mm, ss := sod/3600, sod/60%60, sod%60
	var f [24]byte // 2006-01-02T15:04:05.000Z
	f[0], f[1] = digits2[year/100*2], digits2[year/100*2+1]
	f[2], f[3] = digits2[year%100*2], digits2[year%100*2+1]
	f[4] = '-'
	f[5], f[6] = digits2[month*2], digits2[month*2+1]
	f[7] = '-'
	f[8], f[9] = digits2[day*2], digits2[day*2+1]
	f[10] = 'T'
	f[11], f[12] = digits2[hh*2], digits2[hh*2+1]
	f[13] = ':'
	f[14], f[15] = digits2[mm*2], digits2[mm*2+1]
	f[16] = ':'
	f[17], f[18] = digits2[ss*2], digits2[ss*2+1]
	f[19] = '.'
	f[20] = byte('0' + ms/100)
	f[21], f[22] = digits2[ms%100*2], digits2[ms%100*2+1]
	f[23] = 'Z'
	return append(b, f[:]...)
}

// digits2 holds "00" to "99": the two digits of n are digits2[2n] and digits2[2n+1].
const digits2 = "00010203040506070809" +
	"10111213141516171819" +
	"20212223242526272829" +
	"30313233343536373839" +
	"40414243444546474849" +
	"50515253545556575859" +
	"60616263646566676869" +
	"70717273747576777879" +
	"80818283848586878889" +
	"90919293949596979899"

// appendField appends `,"key":"v"` unless v is empty; prefix is `,"key":`.
func appendField(b []byte, prefix, v string) []byte {
	if v == "" {
		return b
	}
	b = append(b, prefix...)
	return appendQuoted(b, v)
}

// appendString is appendField with the bare key, as the reader builds the needles it looks
// for in raw lines.
func appendString(b []byte, key, v string) []byte {
	if v == "" {
		return b
	}
	b = append(b, ',', '"')
	b = append(b, key...)
	b = append(b, '"', ':')
	return appendQuoted(b, v)
}

// plain marks the bytes appendQuoted copies as they are: printable ASCII but '"' and '\\'.
var plain = func() (t [256]bool) {
	for c := 0x20; c < 0x7f; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// appendQuoted writes v as a JSON string: quotes, backslashes and control characters escaped,
// invalid UTF-8 replaced by U+FFFD, so a hostile byte can never break a line of the log.
// Runs of bytes that need nothing (plain ASCII and valid UTF-8) are copied whole.
func appendQuoted(b []byte, v string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	run := 0 // start of the bytes not yet copied
	for i := 0; i < len(v); {
		c := v[i]
		if plain[c] {
			i++
			continue
		}
		if c < utf8.RuneSelf {
			b = append(b, v[run:i]...)
			if c == '"' || c == '\\' {
				b = append(b, '\\', c)
			} else {
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			run = i
			continue
		}
		r, size := utf8.DecodeRuneInString(v[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, v[run:i]...)
			b = append(b, `\ufffd`...)
			run = i + 1
		}
		i += size
	}
	b = append(b, v[run:]...)
	return append(b, '"')
}

func appendStrings(b []byte, key string, vs []string) []byte {
	if len(vs) == 0 {
		return b
	}
	b = append(b, ',', '"')
	b = append(b, key...)
	b = append(b, `":[`...)
	for i, v := range vs {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendQuoted(b, v)
	}
	return append(b, ']')
}

// wire is the JSON form for decoding.
type wire struct {
	Seq      uint64   `json:"seq"`
	Time     string   `json:"time"`
	Box      string   `json:"box"`
	Level    int      `json:"level"`
	Kind     Kind     `json:"kind"`
	Client   string   `json:"client"`
	Device   string   `json:"device"`
	MAC      string   `json:"mac"`
	Event    string   `json:"event"`
	ID       uint64   `json:"id"`
	Name     string   `json:"name"`
	QType    string   `json:"qtype"`
	Port     uint16   `json:"port"`
	Proto    string   `json:"proto"`
	SNI      string   `json:"sni"`
	ALPN     []string `json:"alpn"`
	Verdict  string   `json:"verdict"`
	Rule     string   `json:"rule"`
	Reason   string   `json:"reason"`
	Rcode    string   `json:"rcode"`
	Answer   []string `json:"answer"`
	Upstream string   `json:"upstream"`
	Via      string   `json:"via"`
	QuerySeq uint64   `json:"query_seq"`
	Flags    []string `json:"flags"`
	Origin   *struct {
		Device string   `json:"device"`
		Path   []string `json:"path"`
		ID     uint64   `json:"id"`
	} `json:"origin"`
	BytesUp    int64  `json:"bytes_up"`
	BytesDown  int64  `json:"bytes_down"`
	DurationMS int64  `json:"duration_ms"`
	Change     string `json:"change"`
	Hash       string `json:"hash"`
	UID        *int   `json:"uid"`
	User       string `json:"user"`
	Count      uint64 `json:"count"`
}

// UnmarshalJSON reads the form AppendJSON writes. Unknown fields are ignored, so newer logs
// stay readable by older tools; reasons older versions spelled otherwise are read in today's
// words (see modernReason).
func (r *Record) UnmarshalJSON(data []byte) error {
	var w wire
	if err := json.Unmarshal(data, &w); err != nil {
		return err
	}
	t, err := time.Parse(time.RFC3339Nano, w.Time)
	if err != nil {
		return fmt.Errorf("audit: record %d: time: %w", w.Seq, err)
	}
	*r = Record{
		Seq: w.Seq, Time: t, Box: w.Box, Level: w.Level, Kind: w.Kind, Device: w.Device, MAC: w.MAC, Event: w.Event, ID: w.ID,
		Name: w.Name, QType: w.QType, Port: w.Port, Proto: w.Proto, SNI: w.SNI, ALPN: w.ALPN, Verdict: w.Verdict,
		Rule: w.Rule, Reason: w.Reason, Rcode: w.Rcode, Via: w.Via, QuerySeq: w.QuerySeq,
		Flags: w.Flags, BytesUp: w.BytesUp, BytesDown: w.BytesDown, DurationMS: w.DurationMS,
		Change: w.Change, Hash: w.Hash, UID: w.UID, User: w.User, Count: w.Count,
	}
	r.Reason = modernReason(r)
	if w.Client != "" {
		if r.Client, err = parseAddrPort(w.Client); err != nil {
			return fmt.Errorf("audit: record %d: client: %w", w.Seq, err)
		}
	}
	if w.Upstream != "" {
		if r.Upstream, err = parseAddrPort(w.Upstream); err != nil {
			return fmt.Errorf("audit: record %d: upstream: %w", w.Seq, err)
		}
	}
	if o := w.Origin; o != nil {
		r.Origin = &Origin{Path: o.Path, ID: o.ID}
		if r.Origin.Device, err = parseAddrPort(o.Device); err != nil {
			return fmt.Errorf("audit: record %d: origin device: %w", w.Seq, err)
		}
	}
	if w.Answer != nil {
		r.Answer = make([]netip.Addr, 0, len(w.Answer))
		for _, s := range w.Answer {
			a, err := netip.ParseAddr(s)
			if err != nil {
				return fmt.Errorf("audit: record %d: answer: %w", w.Seq, err)
			}
			r.Answer = append(r.Answer, a)
		}
	}
	return nil
}

// parseAddrPort reads "ip:port", "[v6]:port" or a bare address (port 0).
func parseAddrPort(s string) (netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.AddrPort{}, err
	}
	return netip.AddrPortFrom(a, 0), nil
}
