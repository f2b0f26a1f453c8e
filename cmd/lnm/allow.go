package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/lnm-project/lnm/adminapi"
	"github.com/lnm-project/lnm/allowfile"
	"github.com/lnm-project/lnm/allowlist"
	"github.com/lnm-project/lnm/appliance"
	"github.com/lnm-project/lnm/config"
	"github.com/lnm-project/lnm/internal/auditview"
	"github.com/lnm-project/lnm/onboard"
)

// allowCommand edits and inspects the allow list. Changes go through the running box, which
// validates, writes the managed file next to the config and applies them; with no box
// running they edit the file directly, under the same lock.
func allowCommand(configFlag cli.Flag, stdout, stderr io.Writer) *cli.Command {
	return &cli.Command{
		Name:  "allow",
		Usage: "list, add, remove and test allow rules",
		Subcommands: []*cli.Command{
			allowListCommand(configFlag, stdout, stderr),
			allowAddCommand(configFlag, stdout, stderr),
			allowRemoveCommand(configFlag, stdout, stderr),
			allowTestCommand(configFlag, stdout),
			allowImportCommand(configFlag, stdout, stderr), allowSuggestCommand(configFlag, stdout, stderr), allowPresetsCommand(stdout),
		},
	}
}

func allowListCommand(configFlag cli.Flag, stdout, stderr io.Writer) *cli.Command {
	return &cli.Command{
		Name:  "list",
		Usage: "print every rule in match order with where it is written, and its hits (from the running box; from the files when none runs)",
		Flags: []cli.Flag{configFlag, &cli.BoolFlag{Name: "json", Usage: "print the list as one JSON document"}},
		Action: func(c *cli.Context) error {
			if _, err := positionals(c, 0, 0, "allow list takes no arguments"); err != nil {
				return err
			}
			cfg, err := loadConfig(c)
			if err != nil {
				return err
			}
			var list adminapi.AllowList
			err = errNoAdmin
			if cfg.Admin != "" {
				ctx, cancel := context.WithTimeout(c.Context, statusTimeout)
				defer cancel()
				client := adminapi.NewClient(cfg.Admin)
				defer client.Close()
				list, err = client.AllowList(ctx)
			}
			if fallback(err) {
				fmt.Fprintf(stderr, "lnm: %s; rules read from the files, without hits\n", why(err, cfg))
				if list, err = appliance.LoadAllowList(cfg.File); err != nil {
					return &exitError{2, err}
				}
			} else if err != nil {
				return &exitError{1, err}
			}
			if c.Bool("json") {
				enc := json.NewEncoder(stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(list)
			}
			return writeAllowList(stdout, &list)
		},
	}
}

func writeAllowList(w io.Writer, l *adminapi.AllowList) error {
	if len(l.Rules) == 0 {
		_, err := fmt.Fprintln(w, "no allow rules: every name is denied")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if l.Live {
		fmt.Fprintln(tw, "RULE\tWRITTEN IN\tHITS\tLAST HIT")
	} else {
		fmt.Fprintln(tw, "RULE\tWRITTEN IN")
	}
	for _, r := range l.Rules {
		if !l.Live {
			fmt.Fprintf(tw, "%s\t%s\n", r.Rule, r.Origin)
			continue
		}
		last := "-"
		if !r.LastHit.IsZero() {
			last = r.LastHit.In(clock.loc).Format(auditview.TimeLayout)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", r.Rule, r.Origin, r.Hits, last)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if l.Live && !l.HitsSince.IsZero() {
		_, err := fmt.Fprintf(w, "hits: allowed DNS answers and connections since %s (the records the box holds in memory)\n",
			l.HitsSince.In(clock.loc).Format(auditview.TimeLayout))
		return err
	}
	return nil
}

func allowAddCommand(configFlag cli.Flag, stdout, stderr io.Writer) *cli.Command {
	return &cli.Command{
		Name:      "add",
		Usage:     "add a rule to the managed rules file next to the config; the running box validates and applies it (exit 2: invalid rule)",
		ArgsUsage: "PATTERN | --preset NAME",
		Flags: []cli.Flag{
			configFlag,
			&cli.StringSliceFlag{Name: "preset", Usage: "add preset `NAME`'s endpoint list (see lnm allow presets) in the same change; rules already in the list are skipped"},
			&cli.StringSliceFlag{Name: "port", Usage: "allow only connections to proxy `PORT` (repeat for several); default: every proxy port"},
			&cli.StringSliceFlag{Name: "from", Usage: "allow only devices in `CIDR` or at an address (repeat for several); default: every device"},
			&cli.StringFlag{Name: "to", Usage: "send the connections to the fixed destination `HOST:PORT` (east-west)"},
			&cli.BoolFlag{Name: "private", Usage: "the name may resolve to plant addresses (RFC 1918, ULA, CGNAT); never loopback, link-local or the box"},
			&cli.StringFlag{Name: "comment", Usage: "`TEXT` for the comment written above the rule"},
		},
		Action: func(c *cli.Context) error {
			args, err := positionals(c, 0, 1, "allow add takes one PATTERN")
			if err != nil {
				return err
			}
			presets := c.StringSlice("preset")
			if len(args) == 0 && len(presets) == 0 {
				return &exitError{2, errors.New("allow add takes one PATTERN, or --preset NAME")}
			}
			if len(presets) > 0 && c.String("to") != "" {
				return &exitError{2, errors.New("--to sends one name's connections to one destination; it cannot go with --preset")}
			}
			spec := adminapi.RuleSpec{From: c.StringSlice("from"), To: c.String("to"), Private: c.Bool("private"), Comment: c.String("comment")}
			for _, p := range c.StringSlice("port") {
				n, err := strconv.Atoi(p)
				if err != nil {
					return &exitError{2, fmt.Errorf("--port %q: want a number from 1 to 65535", p)}
				}
				spec.Ports = append(spec.Ports, n)
			}
			var specs []adminapi.RuleSpec
			for _, a := range args {
				s := spec
				s.Pattern = a
				specs = append(specs, s)
			}
			cfg, err := loadConfig(c)
			if err != nil {
				return err
			}
			for _, name := range presets {
				ps, err := presetSpecs(name, spec, cfg, stderr)
				if err != nil {
					return err
				}
				specs = append(specs, ps...)
			}
			for _, s := range specs {
				if _, err := s.Rule(); err != nil {
					return &exitError{2, fmt.Errorf("invalid rule: %w", err)}
				}
			}
			return addRules(c, cfg, specs, stdout, stderr)
		},
	}
}

// presetSpecs turns a preset into rules to add, each narrowed by base's ports and sources and
// noted with the preset's name; rules the list already has are skipped and named on stderr.
func presetSpecs(name string, base adminapi.RuleSpec, cfg *config.Config, stderr io.Writer) ([]adminapi.RuleSpec, error) {
	rules, err := onboard.Preset(name)
	if err != nil {
		return nil, &exitError{2, err}
	}
	have := map[string]string{}
	for i := range cfg.Rules {
		have[cfg.Rules[i].String()] = cfg.Rules[i].Origin
	}
	comment := "preset " + name
	if base.Comment != "" {
		comment += ": " + base.Comment
	}
	var out []adminapi.RuleSpec
	for _, r := range rules {
		s := base
		s.Pattern, s.Comment = r.Pattern.String(), comment
		rule, err := s.Rule()
		if err != nil {
			return nil, &exitError{2, fmt.Errorf("invalid rule: %w", err)}
		}
		if origin, ok := have[rule.String()]; ok {
			fmt.Fprintf(stderr, "lnm: skipped %s: already in the list (%s)\n", rule.String(), origin)
			continue
		}
		out = append(out, s)
	}
	return out, nil
}

func allowRemoveCommand(configFlag cli.Flag, stdout, stderr io.Writer) *cli.Command {
	return &cli.Command{
		Name:      "remove",
		Usage:     "remove the managed rules with PATTERN; rules written in the config file are refused with their FILE:LINE (exit 1)",
		ArgsUsage: "PATTERN",
		Flags:     []cli.Flag{configFlag},
		Action: func(c *cli.Context) error {
			args, err := positionals(c, 1, 1, "allow remove takes one PATTERN")
			if err != nil {
				return err
			}
			p, err := allowlist.ParsePattern(args[0])
			if err != nil {
				return &exitError{2, err}
			}
			cfg, err := loadConfig(c)
			if err != nil {
				return err
			}
			var ch adminapi.AllowChange
			err = errNoAdmin
			if cfg.Admin != "" {
				ctx, cancel := context.WithTimeout(c.Context, changeTimeout)
				defer cancel()
				client := adminapi.NewClient(cfg.Admin)
				defer client.Close()
				ch, err = client.AllowRemove(ctx, p.String())
			}
			if fallback(err) {
				reason := why(err, cfg)
				if _, ch, err = appliance.RemoveManaged(cfg.File, p); err == nil {
					fmt.Fprintf(stderr, "lnm: %s; edited the file directly\n", reason)
				}
			}
			if err != nil {
				return changeError(err)
			}
			for _, r := range ch.Removed {
				fmt.Fprintf(stdout, "removed %s\n", r)
			}
			for _, k := range ch.Kept {
				fmt.Fprintf(stdout, "kept %s: written in the config file\n", k)
			}
			return reportChange(stdout, &ch, cfg)
		},
	}
}

func reportChange(w io.Writer, ch *adminapi.AllowChange, cfg *config.Config) error {
	var err error
	if ch.Applied {
		_, err = fmt.Fprintf(w, "wrote %s; the box applied it: %d %s, list %s\n", ch.Managed, ch.Rules, plural(ch.Rules, "rule"), ch.Hash)
	} else {
		hint := "a box reads it when it starts"
		if cfg.Admin == "" {
			hint = "send SIGHUP to a running box to apply it"
		}
		_, err = fmt.Fprintf(w, "wrote %s: %d %s, list %s; %s\n", ch.Managed, ch.Rules, plural(ch.Rules, "rule"), ch.Hash, hint)
	}
	return err
}

func plural(n int, word string) string {
	if n == 1 {
		return word
	}
	return word + "s"
}

// changeError gives an edit's failure its exit code: 2 for a rule or file the box or the
// parser refused, 1 for everything else (a rule in the config file, no such rule, I/O).
func changeError(err error) error {
	var api *adminapi.StatusError
	var ce *config.ConfigError
	switch {
	case errors.As(err, &api) && api.Code == http.StatusUnprocessableEntity,
		errors.As(err, &ce), errors.Is(err, allowfile.ErrDuplicateRule):
		return &exitError{2, err}
	}
	return &exitError{1, err}
}

// errNoAdmin stands for a config with `admin off`: there is no box to ask.
var errNoAdmin = errors.New("the admin API is off")

// fallback reports whether a change should edit the files directly: no box listens on the
// socket (or the admin API is off). A socket that exists but refuses this user is not that:
// a box runs, and editing behind its back would split the file from the running list.
func fallback(err error) bool {
	if errors.Is(err, errNoAdmin) {
		return true
	}
	var ue *adminapi.UnreachableError
	if !errors.As(err, &ue) {
		return false
	}
	return !errors.Is(err, syscall.EACCES) && !errors.Is(err, syscall.EPERM)
}

// why says why the files were used.
func why(err error, cfg *config.Config) string {
	if errors.Is(err, errNoAdmin) {
		return "the admin API is off in " + cfg.File
	}
	return "lnm is not running (nothing answers at " + cfg.Admin + ")"
}

func allowTestCommand(configFlag cli.Flag, stdout io.Writer) *cli.Command {
	return &cli.Command{
		Name: "test",
		Usage: "decide NAME (a DNS question) or NAME:PORT (a connection) with the rules in the files, no box needed; " +
			"exit 0 allowed, 1 denied, 2 bad arguments or config",
		ArgsUsage: "NAME[:PORT]",
		Flags: []cli.Flag{
			configFlag,
			&cli.StringFlag{Name: "from", Usage: "the device's `IP` address; without it, rules limited to some devices count as not matching"},
		},
		Action: func(c *cli.Context) error {
			args, err := positionals(c, 1, 1, "allow test takes one NAME or NAME:PORT")
			if err != nil {
				return err
			}
			q, err := testQuery(args[0], c.String("from"))
			if err != nil {
				return &exitError{2, err}
			}
			cfg, err := loadConfig(c)
			if err != nil {
				return err
			}
			allowed, text := allowTest(cfg, q)
			fmt.Fprint(stdout, text)
			if !allowed {
				return &exitError{1, errors.New("denied")}
			}
			return nil
		},
	}
}

// testQuery reads NAME[:PORT] and an optional source address.
func testQuery(arg, from string) (allowlist.Query, error) {
	var q allowlist.Query
	name := arg
	if i := strings.LastIndexByte(arg, ':'); i >= 0 {
		port, err := strconv.ParseUint(arg[i+1:], 10, 16)
		if err != nil || port == 0 {
			return q, fmt.Errorf("%q: want NAME or NAME:PORT with a port from 1 to 65535", arg)
		}
		name, q.Port = arg[:i], uint16(port)
	}
	n, err := allowlist.ParseUnicodeName(name)
	if err != nil {
		return q, err
	}
	q.Name = n
	if from != "" {
		a, err := netip.ParseAddr(from)
		if err != nil {
			return q, fmt.Errorf("--from %q: want an IP address", from)
		}
		q.Source = a.Unmap()
	}
	return q, nil
}

// allowTest decides q as a box running cfg would (appliance.Decide, which asks the resolver's
// and the forwarder's own decision functions) and explains it. The text ends with a newline.
func allowTest(cfg *config.Config, q allowlist.Query) (bool, string) {
	var b strings.Builder
	what := string(q.Name) + " (DNS)"
	if q.Port != 0 {
		what = string(q.Name) + ":" + strconv.Itoa(int(q.Port))
	}
	if q.Source.IsValid() {
		what += " from " + q.Source.String()
	}
	a, err := appliance.Decide(cfg, q)
	if err != nil { // Load validated the rules
		fmt.Fprintf(&b, "deny  %s\n  why      %v\n", what, err)
		return false, b.String()
	}
	if a.Reason == allowlist.ReasonSourceNotAllowed {
		fmt.Fprintf(&b, "deny  %s\n  why      %s is outside sources; the box refuses it whatever the name\n", what, q.Source)
		return false, b.String()
	}
	for _, z := range a.Zones {
		fmt.Fprintf(&b, "note  %s is in zone %s (%s): DNS answers come from the zone's servers\n", q.Name, z.Name, z.Origin)
	}
	switch {
	case a.Route != nil:
		fmt.Fprintf(&b, "allow %s\n  route    tcp %d to %s (%s): every connection is forwarded, whatever the name\n", what, a.Route.Port, a.Route.To, a.Route.Origin)
		return true, b.String()
	case a.NoProxy:
		fmt.Fprintf(&b, "deny  %s\n  why      no proxy listens on port %d\n", what, q.Port)
		return false, b.String()
	case a.Allowed && !a.Learned:
		fmt.Fprintf(&b, "allow %s\n  rule     %s (%s)\n", what, a.Rule.String(), a.Rule.Origin)
		return true, b.String()
	}
	// Denied by the list (learn mode lets it through, but it is what enforce would deny):
	// the nearest rule and what to write instead.
	l, _ := cfg.List()
	e := allowlist.Explain(l, q)
	fmt.Fprintf(&b, "deny  %s: %s\n", what, a.Reason)
	if e.Near != nil {
		fmt.Fprintf(&b, "  nearest  %s (%s)\n", e.Near.String(), e.Near.Origin)
	}
	fmt.Fprintf(&b, "  why      %s\n", e.Why)
	if a.Learned {
		b.WriteString("  mode     learn: the box lets it through and records it as would-deny\n")
	}
	return false, b.String()
}

// positionals returns the command's positional arguments, between min and max of them, and
// sets the flags written after them: urfave/cli v2 stops parsing flags at the first
// positional, and `lnm allow add NAME --port 8883` is the natural order.
func positionals(c *cli.Context, min, max int, usage string) ([]string, error) {
	rest := c.Args().Slice()
	var args []string
	for i := 0; i < len(rest); i++ {
		a := rest[i]
		if a == "--" {
			args = append(args, rest[i+1:]...)
			break
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			args = append(args, a)
			continue
		}
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		f := lookupFlag(c.Command.Flags, name)
		if f == nil {
			return nil, &exitError{2, fmt.Errorf("%s: unknown flag %s", c.Command.FullName(), a)}
		}
		if _, isBool := f.(*cli.BoolFlag); isBool && !hasValue {
			value, hasValue = "true", true
		}
		if !hasValue {
			if i+1 == len(rest) {
				return nil, &exitError{2, fmt.Errorf("%s: flag %s needs a value", c.Command.FullName(), a)}
			}
			i++
			value = rest[i]
		}
		// Set the flag's first name: urfave/cli keeps a separate value per alias, and the
		// commands read the first name.
		if err := c.Set(f.Names()[0], value); err != nil {
			return nil, &exitError{2, fmt.Errorf("%s: %s: %v", c.Command.FullName(), a, err)}
		}
	}
	if len(args) < min || len(args) > max {
		return nil, &exitError{2, fmt.Errorf("%s, got %q", usage, args)}
	}
	return args, nil
}

func lookupFlag(flags []cli.Flag, name string) cli.Flag {
	for _, f := range flags {
		for _, n := range f.Names() {
			if n == name {
				return f
			}
		}
	}
	return nil
}
