package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/lnm-project/lnm/adminapi"
	"github.com/lnm-project/lnm/allowlist"
	"github.com/lnm-project/lnm/audit"
	"github.com/lnm-project/lnm/config"
	"github.com/lnm-project/lnm/internal/auditview"
	"github.com/lnm-project/lnm/onboard"
)

// suggestShown bounds the devices and names a suggestion's table row lists; --json has all.
const suggestShown = 3

func allowSuggestCommand(configFlag cli.Flag, stdout, stderr io.Writer) *cli.Command {
	return &cli.Command{
		Name: "suggest",
		Usage: "propose rules for the names the box denied, or in learn mode would have denied, with counts, ports and devices; " +
			"--apply adds them",
		Flags: []cli.Flag{
			configFlag,
			&cli.StringFlag{Name: "since", Value: "7d", Usage: "records at or after `WHEN`: a duration before now (90s, 1h, 7d), an RFC 3339 time, or a local 2006-01-02 15:04"},
			&cli.StringFlag{Name: "client", Usage: "only devices at this `IP` address or in this CIDR; the rules are limited to them (from CIDR)"},
			&cli.IntFlag{Name: "collapse", Usage: "fold `N` or more names under one parent into *.PARENT; 0: never"},
			&cli.BoolFlag{Name: "apply", Usage: "add the proposed rules (through the running box, or to the managed file when none runs)"},
			&cli.BoolFlag{Name: "json", Usage: "print the proposals as JSON Lines"},
			&cli.StringFlag{Name: "dir", Usage: "read the audit log files in `DIR` (a copied log), not the box"},
		},
		Action: func(c *cli.Context) error { return allowSuggest(c, stdout, stderr) },
	}
}

func allowSuggest(c *cli.Context, stdout, stderr io.Writer) error {
	if _, err := positionals(c, 0, 0, "allow suggest takes no arguments"); err != nil {
		return err
	}
	usage := func(format string, args ...any) error { return &exitError{2, fmt.Errorf(format, args...)} }
	var f audit.Filter
	var opt onboard.SuggestOptions
	var err error
	if f.Since, err = parseWhen(c.String("since"), clock.now()); err != nil {
		return usage("--since %q: %v", c.String("since"), err)
	}
	if s := c.String("client"); s != "" {
		if f.Client, err = adminapi.ParseClient(s); err != nil {
			return usage("--client %q: want an address or CIDR", s)
		}
		opt.Clients = f.Client
	}
	if opt.Collapse = c.Int("collapse"); opt.Collapse < 0 {
		return usage("--collapse %d: want 0 (never) or more", opt.Collapse)
	}
	if opt.Collapse == 1 {
		return usage("--collapse 1 would make *.PARENT of every single name; want 2 or more")
	}

	// The list in force skips names allowed since; without a config (--dir alone) nothing is
	// skipped.
	var cfg *config.Config
	if c.String("dir") == "" || c.IsSet("config") || c.Bool("apply") {
		if cfg, err = loadConfig(c); err != nil {
			return err
		}
		if opt.Allowed, err = cfg.List(); err != nil {
			return &exitError{2, err}
		}
	}

	src, err := pickSource(c, stderr)
	if err != nil {
		return err
	}
	defer src.close()
	var recs []audit.Record
	var corrupt error
	for _, v := range []string{audit.VerdictWouldDeny, audit.VerdictDeny} {
		f.Verdict = v
		err := src.each(c.Context, f, func(r *audit.Record) error {
			recs = append(recs, *r)
			return nil
		})
		if errors.Is(err, audit.ErrCorrupt) {
			corrupt = err
		} else if err != nil {
			return queryDone(err, stderr)
		}
	}
	ss := onboard.Suggest(recs, opt)

	out := bufio.NewWriter(stdout)
	if c.Bool("json") {
		err = writeSuggestionsJSON(out, ss)
	} else {
		err = writeSuggestions(out, ss, len(recs), f.Since)
	}
	if ferr := out.Flush(); err == nil {
		err = ferr
	}
	if err != nil {
		return &exitError{1, err}
	}
	if corrupt != nil {
		fmt.Fprintf(stderr, "lnm: warning: %v\n", corrupt)
	}
	if !c.Bool("apply") || len(ss) == 0 {
		return nil
	}
	rules := make([]allowlist.Rule, len(ss))
	for i := range ss {
		rules[i] = ss[i].Rule
	}
	plan := planAdd(rules, cfg)
	if err := plan.check(); err != nil {
		return err
	}
	byRule := map[string]*onboard.Suggestion{}
	for i := range ss {
		byRule[ss[i].Rule.Key()] = &ss[i]
	}
	specs := make([]adminapi.RuleSpec, len(plan.add))
	for i, r := range plan.add {
		specs[i] = adminapi.SpecOf(r, suggestComment(byRule[r.Key()]))
	}
	report := stdout
	if c.Bool("json") {
		report = stderr // keep stdout JSON
	}
	return addRules(c, cfg, specs, report, stderr)
}

// suggestComment is the note written above an applied suggestion.
func suggestComment(s *onboard.Suggestion) string {
	if s == nil {
		return "suggested"
	}
	return fmt.Sprintf("suggested from %d %s by %d %s, %s to %s", s.Count(), plural(s.Count(), "record"),
		len(s.Clients), plural(len(s.Clients), "device"),
		s.First.UTC().Format(time.RFC3339), s.Last.UTC().Format(time.RFC3339))
}

func writeSuggestions(w io.Writer, ss []onboard.Suggestion, records int, since time.Time) error {
	if len(ss) == 0 {
		_, err := fmt.Fprintf(w, "nothing to suggest: no denied name since %s (%d deny and would-deny records)\n",
			since.In(clock.loc).Format(auditview.TimeLayout), records)
		return err
	}
	fmt.Fprintf(w, "%d %s from %d deny and would-deny records since %s, most needed first\n",
		len(ss), plural(len(ss), "proposal"), records, since.In(clock.loc).Format(auditview.TimeLayout))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "RULE\tDNS\tCONNS\tDEVICES\tREASONS\tLAST SEEN")
	var after []string // what does not fit a row: a wildcard's names, notes
	for _, s := range ss {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\t%s\n", s.Rule.String(), s.Queries, s.Conns,
			shortList(addrStrings(s.Clients)), strings.Join(s.Reasons, ","), s.Last.In(clock.loc).Format(auditview.TimeLayout))
		if s.Rule.Pattern.Kind == allowlist.Wildcard {
			names := make([]string, len(s.Names))
			for i, n := range s.Names {
				names[i] = string(n)
			}
			after = append(after, fmt.Sprintf("%s covers %s", s.Rule.Pattern, strings.Join(names, " ")))
		}
		if s.Note != "" {
			after = append(after, fmt.Sprintf("%s: %s", s.Rule.Pattern, s.Note))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, a := range after {
		if _, err := fmt.Fprintln(w, a); err != nil {
			return err
		}
	}
	return nil
}

func addrStrings(as []netip.Addr) []string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = a.String()
	}
	return out
}

// shortList joins the first few items and counts the rest.
func shortList(items []string) string {
	if len(items) <= suggestShown {
		return strings.Join(items, " ")
	}
	return fmt.Sprintf("%s +%d", strings.Join(items[:suggestShown], " "), len(items)-suggestShown)
}

// suggestionJSON is one line of `lnm allow suggest --json`.
type suggestionJSON struct {
	Rule    string    `json:"rule"`
	Pattern string    `json:"pattern"`
	Ports   []uint16  `json:"ports,omitempty"`
	From    []string  `json:"from,omitempty"`
	Names   []string  `json:"names"`
	DNS     int       `json:"dns"`
	Conns   int       `json:"conns"`
	Clients []string  `json:"clients"`
	Reasons []string  `json:"reasons"`
	First   time.Time `json:"first"`
	Last    time.Time `json:"last"`
	Note    string    `json:"note,omitempty"`
}

func writeSuggestionsJSON(w io.Writer, ss []onboard.Suggestion) error {
	enc := json.NewEncoder(w)
	for _, s := range ss {
		j := suggestionJSON{
			Rule: s.Rule.String(), Pattern: s.Rule.Pattern.String(), Ports: s.Rule.Ports,
			DNS: s.Queries, Conns: s.Conns, Clients: addrStrings(s.Clients), Reasons: s.Reasons,
			First: s.First.UTC(), Last: s.Last.UTC(), Note: s.Note,
		}
		for _, p := range s.Rule.From {
			j.From = append(j.From, p.String())
		}
		for _, n := range s.Names {
			j.Names = append(j.Names, string(n))
		}
		if err := enc.Encode(j); err != nil {
			return err
		}
	}
	return nil
}
