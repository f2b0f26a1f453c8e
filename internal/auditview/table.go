// Package auditview renders audit records for people: the one-line-a-record table of `lnm
// audit query` and `lnm audit follow`, and the small Text helpers (sizes, times, names made
// safe for a terminal) the CLI's other tables share, and `lnm status`'s document (WriteStatus).
// Machines read --json instead.
package auditview

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/lnm-project/lnm/allowlist"
	"github.com/lnm-project/lnm/audit"
)

// The audit table is for people; machines use --json. One record is one line, so grep works:
//
//	SEQ  TIME                     KIND  CLIENT           NAME/SNI        VERDICT  DETAIL
//	41   2026-03-01 10:15:02.123  dns   10.3.0.20        api.azure.test  allow    A NOERROR -> 10.3.0.1  rule …
//	42   2026-03-01 10:15:02.180  conn  10.3.0.20:51234  api.azure.test  allow    open id 7 :443 …  query #41 …
//
// Times are local. DETAIL depends on the kind; a conn shows its flags in brackets right after
// the event, where they are hard to miss, then the dns record it is linked to (by seq, with
// its type, answer, and how long before the connection it was asked). The rule, the longest
// and least surprising part, comes last.

// columns of the table; the last one, DETAIL, is never padded.
const (
	colSeq = iota
	colTime
	colKind
	colClient
	colName
	colVerdict
	ColDetail
	numCols
)

type Row [numCols]string

var Header = Row{"SEQ", "TIME", "KIND", "CLIENT", "NAME/SNI", "VERDICT", "DETAIL"}

// FollowWidths are the fixed widths of `lnm audit follow`, which cannot look ahead: an IPv4
// client with its port, and names of common length, stay aligned; longer values push the
// rest of their line right.
var FollowWidths = [ColDetail]int{7, 23, 7, 21, 30, 10}

const (
	TimeLayout    = "2006-01-02 15:04:05.000"
	timeOfDay     = "15:04:05.000"
	columnSpacing = "  "
)

// Renderer turns records into rows. queries holds the dns records conns link to, by seq.
type Renderer struct {
	Loc     *time.Location
	Queries map[uint64]*audit.Record
}

func (rd *Renderer) time(t time.Time) string { return t.In(rd.Loc).Format(TimeLayout) }

func (rd *Renderer) Row(r *audit.Record) Row {
	var out Row
	out[colSeq] = strconv.FormatUint(r.Seq, 10)
	out[colTime] = rd.time(r.Time)
	out[colKind] = OrDash(Field(string(r.Kind)))
	out[colVerdict] = OrDash(Field(r.Verdict))
	var d detail
	switch r.Kind {
	case audit.KindDNS:
		out[colClient] = clientString(r, false)
		out[colName] = OrDash(Field(r.Name))
		rd.dnsDetail(&d, r)
	case audit.KindConn:
		out[colClient] = clientString(r, true)
		out[colName] = OrDash(Field(r.SNI))
		rd.connDetail(&d, r)
	case audit.KindConfig:
		out[colClient], out[colName] = "-", "-"
		d.add(Text(r.Change))
		if r.UID != nil {
			d.add("uid " + strconv.Itoa(*r.UID))
		} else {
			d.add("by the box")
		}
		if r.Hash != "" {
			d.add("hash " + Text(r.Hash))
		}
	case audit.KindDHCP:
		out[colClient], out[colName] = OrDash(clientString(r, false)), "-"
		d.add(Text(r.Event))
		if r.MAC != "" {
			d.add("mac " + Text(r.MAC))
		}
		if r.Reason != "" {
			d.add("reason " + Text(r.Reason))
		}
	case audit.KindSummary:
		out[colClient], out[colName] = OrDash(clientString(r, true)), OrDash(Field(r.Name))
		d.add("count " + strconv.FormatUint(r.Count, 10))
		if r.Reason != "" {
			d.add("reason " + Text(r.Reason))
		}
	default: // a kind newer than this program: what every record may carry
		out[colClient], out[colName] = OrDash(clientString(r, true)), OrDash(Field(r.Name))
		if r.Reason != "" {
			d.add("reason " + Text(r.Reason))
		}
	}
	out[ColDetail] = d.String()
	return out
}

// reasonListed is the reason of every ordinary allow: the rule column says it already.
const reasonListed = string(allowlist.ReasonListed)

func (rd *Renderer) dnsDetail(d *detail, r *audit.Record) {
	d.add(strings.TrimSpace(Field(r.QType) + " " + Field(r.Rcode)))
	if len(r.Answer) > 0 {
		d.append(" -> " + addrs(r))
	}
	if r.Reason != "" && r.Reason != reasonListed {
		d.add("reason " + Text(r.Reason))
	}
	if r.Rule != "" {
		d.add("rule " + Text(r.Rule))
	}
}

func (rd *Renderer) connDetail(d *detail, r *audit.Record) {
	d.add(OrDash(Field(r.Event)))
	if len(r.Flags) > 0 {
		fl := make([]string, len(r.Flags))
		for i, f := range r.Flags {
			fl[i] = Field(f)
		}
		d.append(" [" + strings.Join(fl, " ") + "]")
	}
	if r.ID != 0 {
		d.append(" id " + strconv.FormatUint(r.ID, 10))
	}
	if r.Port != 0 {
		d.append(" :" + strconv.Itoa(int(r.Port)))
	}
	if r.Proto != "" {
		d.append(" " + Field(r.Proto))
	}
	if r.Via != "" {
		d.append(" via " + Field(r.Via))
	}
	if r.Upstream.IsValid() {
		d.append(" -> " + r.Upstream.String())
	}
	if len(r.ALPN) > 0 {
		a := make([]string, len(r.ALPN))
		for i, p := range r.ALPN {
			a[i] = Field(p)
		}
		d.add("alpn " + strings.Join(a, ","))
	}
	if r.Origin != nil {
		d.add(originText(r.Origin))
	}
	if r.QuerySeq != 0 {
		d.add(rd.link(r))
	}
	if r.Event == audit.EventClose {
		d.add(fmt.Sprintf("up %s down %s in %s", Size(r.BytesUp), Size(r.BytesDown),
			(time.Duration(r.DurationMS) * time.Millisecond).String()))
	}
	if r.Reason != "" && r.Reason != reasonListed {
		d.add("reason " + Text(r.Reason))
	}
	if r.Rule != "" && r.Event != audit.EventClose { // a close repeats its open's rule
		d.add("rule " + Text(r.Rule))
	}
}

// link describes the dns record a conn is linked to.
func (rd *Renderer) link(r *audit.Record) string {
	s := "query #" + strconv.FormatUint(r.QuerySeq, 10)
	q := rd.Queries[r.QuerySeq]
	if q == nil {
		return s + " (not found)"
	}
	s += " " + strings.TrimSpace(Field(q.QType)+" "+Field(q.Rcode))
	if len(q.Answer) > 0 {
		s += " -> " + addrs(q)
	}
	at, layout := q.Time.In(rd.Loc), TimeLayout
	if sameDay(at, r.Time.In(rd.Loc)) {
		layout = timeOfDay // the date is in the Row's TIME
	}
	s += " at " + at.Format(layout)
	if gap := r.Time.Sub(q.Time).Round(time.Millisecond); gap >= 0 {
		s += " (" + gap.String() + " before)"
	}
	return s
}

func sameDay(a, b time.Time) bool {
	y1, m1, d1 := a.Date()
	y2, m2, d2 := b.Date()
	return y1 == y2 && m1 == m2 && d1 == d2
}

// detail assembles DETAIL: groups separated by two spaces, words within a group by one.
type detail struct{ b strings.Builder }

func (d *detail) add(s string) {
	if s == "" {
		return
	}
	if d.b.Len() > 0 {
		d.b.WriteString(columnSpacing)
	}
	d.b.WriteString(s)
}

func (d *detail) append(s string) { d.b.WriteString(s) }

func (d *detail) String() string { return d.b.String() }

// clientString is the client's address (with its port for a conn), followed by the device's
// name in parentheses when the box leased it the address.
func clientString(r *audit.Record, withPort bool) string {
	if !r.Client.IsValid() {
		return ""
	}
	s := r.Client.String()
	if !withPort || r.Client.Port() == 0 {
		s = r.Client.Addr().String()
	}
	if r.Device != "" {
		s += " (" + Field(r.Device) + ")"
	}
	return s
}

func addrs(r *audit.Record) string {
	s := make([]string, len(r.Answer))
	for i, a := range r.Answer {
		s[i] = a.String()
	}
	return strings.Join(s, ",")
}

func OrDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// Field makes a value safe for one column: names and SNIs come from devices, and a byte that
// moves the cursor or starts a terminal escape must not reach the screen. A value with
// anything but printable, non-space characters is shown Go-quoted.
func Field(s string) string {
	for _, c := range s {
		if c == utf8.RuneError || !unicode.IsPrint(c) || unicode.IsSpace(c) {
			return strconv.QuoteToASCII(s)
		}
	}
	return s
}

// Text is Field for free Text, where plain spaces are fine.
func Text(s string) string {
	for _, c := range s {
		if c == utf8.RuneError || (!unicode.IsPrint(c) && c != ' ') {
			return strconv.QuoteToASCII(s)
		}
	}
	return s
}

// Size writes a byte count the way people read it; --json has the exact number.
func Size(n int64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatInt(n, 10) + "B"
	}
	v, i := float64(n)/unit, 0
	for v >= unit && i < 4 {
		v /= unit
		i++
	}
	return strconv.FormatFloat(v, 'f', 1, 64) + [...]string{"KiB", "MiB", "GiB", "TiB", "PiB"}[i]
}

// WriteTable writes the Header and rows aligned to the widest value of each column.
func WriteTable(w io.Writer, rows []Row) error {
	var widths [ColDetail]int
	for _, r := range append([]Row{Header}, rows...) {
		for i := range widths {
			widths[i] = max(widths[i], utf8.RuneCountInString(r[i]))
		}
	}
	if err := WriteRow(w, Header, widths); err != nil {
		return err
	}
	for _, r := range rows {
		if err := WriteRow(w, r, widths); err != nil {
			return err
		}
	}
	return nil
}

func WriteRow(w io.Writer, r Row, widths [ColDetail]int) error {
	var b strings.Builder
	for i, wd := range widths {
		b.WriteString(r[i])
		if pad := wd - utf8.RuneCountInString(r[i]); pad > 0 {
			b.WriteString(strings.Repeat(" ", pad))
		}
		b.WriteString(columnSpacing)
	}
	b.WriteString(r[ColDetail])
	line := strings.TrimRight(b.String(), " ")
	_, err := io.WriteString(w, line+"\n")
	return err
}
