package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/lnm-project/lnm/adminapi"
	"github.com/lnm-project/lnm/internal/auditview"
)

// statusTimeout bounds `lnm status`: the box answers from memory.
const statusTimeout = 10 * time.Second

func statusCommand(configFlag cli.Flag, stdout io.Writer) *cli.Command {
	return &cli.Command{
		Name:  "status",
		Usage: "show the running box: level, parent, listeners, counters, top clients and names, audit health",
		Flags: []cli.Flag{
			configFlag,
			&cli.BoolFlag{Name: "json", Usage: "print the status document as the box sends it"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return &exitError{2, fmt.Errorf("status takes no arguments, got %q", c.Args().Slice())}
			}
			cfg, err := loadConfig(c)
			if err != nil {
				return err
			}
			if cfg.Admin == "" {
				return &exitError{1, fmt.Errorf("the admin API is off in %s: no status to show", cfg.File)}
			}
			ctx, cancel := context.WithTimeout(c.Context, statusTimeout)
			defer cancel()
			client := adminapi.NewClient(cfg.Admin)
			defer client.Close()
			raw, st, err := client.Status(ctx)
			if err != nil {
				return &exitError{1, err}
			}
			if c.Bool("json") {
				_, err = fmt.Fprintf(stdout, "%s\n", raw)
			} else {
				err = writeStatus(stdout, st, clock.loc)
			}
			if err != nil {
				return &exitError{1, err}
			}
			return nil
		},
	}
}

// writeStatus prints the status document for people: one topic per line, label first.
func writeStatus(w io.Writer, st *adminapi.Status, loc *time.Location) error {
	out := bufio.NewWriter(w)
	line := func(label, format string, args ...any) {
		fmt.Fprintf(out, "%-10s %s\n", label, fmt.Sprintf(format, args...))
	}
	more := func(format string, args ...any) { line("", format, args...) }

	mode := st.Mode
	if mode == "" {
		mode = "enforce"
	}
	line("box", "%s, level %d, %s", auditview.OrDash(auditview.Field(st.Box)), st.Level, auditview.Text(mode))
	line("version", "%s", auditview.OrDash(auditview.Text(st.Version)))
	line("config", "%s", auditview.OrDash(auditview.Text(st.Config)))
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
		line("parent", "%s answers (rtt %s)", auditview.Text(p.Addr), time.Duration(p.RTTMS)*time.Millisecond)
	default:
		line("parent", "%s DOES NOT ANSWER: %s", auditview.Text(p.Addr), auditview.OrDash(auditview.Text(p.Error)))
	}
	if len(st.Listeners) == 0 {
		line("listeners", "none")
	}
	for i, l := range st.Listeners {
		label := ""
		if i == 0 {
			label = "listeners"
		}
		line(label, "%-9s %s", auditview.Text(l.Proto), auditview.Text(l.Addr))
	}
	line("rules", "%d", st.Rules)
	cn := st.Counters
	if cn.DNSRateLimited > 0 {
		line("dns", "%d queries, %d denied, %d over clients' rate limits", cn.DNSQueries, cn.DNSDenied, cn.DNSRateLimited)
	} else {
		line("dns", "%d queries, %d denied", cn.DNSQueries, cn.DNSDenied)
	}
	line("conns", "%d connections, %d denied, %d active", cn.Conns, cn.ConnsDenied, st.Active)
	line("bytes", "up %s, down %s", auditview.Size(int64(cn.BytesUp)), auditview.Size(int64(cn.BytesDown)))

	a := st.Audit
	switch {
	case a.Dir == "":
		line("audit", "off: records are kept in memory only")
	case a.Healthy:
		line("audit", "%s: healthy", auditview.Text(a.Dir))
	default:
		policy := "failing closed: new queries get SERVFAIL, new connections are refused"
		if a.FailOpen {
			policy = "failing open: serving without records"
		}
		line("audit", "%s: FAILING: %s", auditview.Text(a.Dir), auditview.OrDash(auditview.Text(a.Error)))
		more("%s; %d refused while failing", policy, a.Refused)
	}
	if a.Dir != "" {
		more("queue %d, last seq %d, %d written", a.Queue, a.LastSeq, a.Written)
	}
	s := st.Store
	if s.Oldest.IsZero() {
		line("store", "%d records, %s", s.Records, auditview.Size(s.Bytes))
	} else {
		line("store", "%d records, %s, oldest %s", s.Records, auditview.Size(s.Bytes), s.Oldest.In(loc).Format(auditview.TimeLayout))
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
			width = max(width, len(auditview.Field(c.Key)))
			countWidth = max(countWidth, len(strconv.Itoa(c.Count)))
		}
		for _, c := range cs {
			fmt.Fprintf(out, "  %-*s  %*d\n", width, auditview.Field(c.Key), countWidth, c.Count)
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
