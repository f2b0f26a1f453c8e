package auditview

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/lnm-project/lnm/adminapi"
)

// WriteStatus prints the status document for people: one topic per line, label first.
func WriteStatus(w io.Writer, st *adminapi.Status, loc *time.Location) error {
	out := bufio.NewWriter(w)
	line := func(label, format string, args ...any) {
		fmt.Fprintf(out, "%-10s %s\n", label, fmt.Sprintf(format, args...))
	}
	more := func(format string, args ...any) { line("", format, args...) }

	mode := st.Mode
	if mode == "" {
		mode = "enforce"
	}
	line("box", "%s, level %d, %s", OrDash(Field(st.Box)), st.Level, Text(mode))
	line("version", "%s", OrDash(Text(st.Version)))
	line("config", "%s", OrDash(Text(st.Config)))
	up := uptime(time.Duration(st.UptimeS) * time.Second)
	if st.Started.IsZero() {
		line("uptime", "%s", up)
	} else {
		line("uptime", "%s, since %s", up, st.Started.In(loc).Format("2006-01-02 15:04:05"))
	}
	switch p := st.Parent; {
	case p == nil:
		line("parent", "none (top level: names are resolved upstream)")
	case p.Reachable:
		line("parent", "%s answers (rtt %s)", Text(p.Addr), time.Duration(p.RTTMS)*time.Millisecond)
	default:
		line("parent", "%s DOES NOT ANSWER: %s", Text(p.Addr), OrDash(Text(p.Error)))
	}
	if len(st.Listeners) == 0 {
		line("listeners", "none")
	}
	for i, l := range st.Listeners {
		label := ""
		if i == 0 {
			label = "listeners"
		}
		line(label, "%-9s %s", Text(l.Proto), Text(l.Addr))
	}
	line("rules", "%d", st.Rules)
	cn := st.Counters
	if cn.DNSRateLimited > 0 {
		line("dns", "%d queries, %d denied, %d over clients' rate limits", cn.DNSQueries, cn.DNSDenied, cn.DNSRateLimited)
	} else {
		line("dns", "%d queries, %d denied", cn.DNSQueries, cn.DNSDenied)
	}
	line("conns", "%d connections, %d denied, %d active", cn.Conns, cn.ConnsDenied, st.Active)
	line("bytes", "up %s, down %s", Size(int64(cn.BytesUp)), Size(int64(cn.BytesDown)))

	a := st.Audit
	switch {
	case a.Dir == "":
		line("audit", "off: records are kept in memory only")
	case a.Healthy:
		line("audit", "%s: healthy", Text(a.Dir))
	default:
		policy := "failing closed: new queries get SERVFAIL, new connections are refused"
		if a.FailOpen {
			policy = "failing open: serving without records"
		}
		line("audit", "%s: FAILING: %s", Text(a.Dir), OrDash(Text(a.Error)))
		more("%s; %d refused while failing", policy, a.Refused)
	}
	if a.Dir != "" {
		more("queue %d, last seq %d, %d written", a.Queue, a.LastSeq, a.Written)
	}
	s := st.Store
	if s.Oldest.IsZero() {
		line("store", "%d records, %s", s.Records, Size(s.Bytes))
	} else {
		line("store", "%d records, %s, oldest %s", s.Records, Size(s.Bytes), s.Oldest.In(loc).Format(TimeLayout))
	}
	top := func(title string, cs []adminapi.Count) {
		fmt.Fprintf(out, "%s in the last hour:", title)
		if len(cs) == 0 {
			fmt.Fprintln(out, " none")
			return
		}
		fmt.Fprintln(out)
		width, countWidth := 0, 0
		for _, c := range cs {
			width = max(width, len(Field(c.Key)))
			countWidth = max(countWidth, len(strconv.Itoa(c.Count)))
		}
		for _, c := range cs {
			fmt.Fprintf(out, "  %-*s  %*d\n", width, Field(c.Key), countWidth, c.Count)
		}
	}
	top("top clients", st.TopClients)
	top("top names", st.TopNames)
	return out.Flush()
}

// uptime is a duration in days, hours, minutes and seconds, the largest two that are set.
func uptime(d time.Duration) string {
	if d < time.Second {
		return "0s"
	}
	parts := []struct {
		unit time.Duration
		name string
	}{{24 * time.Hour, "d"}, {time.Hour, "h"}, {time.Minute, "m"}, {time.Second, "s"}}
	var b strings.Builder
	shown := 0
	for _, p := range parts {
		if n := d / p.unit; n > 0 || shown > 0 {
			fmt.Fprintf(&b, "%d%s", n, p.name)
			d -= n * p.unit
			if shown++; shown == 2 {
				break
			}
		}
	}
	return b.String()
}
