package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/lnm-project/lnm/adminapi"
	"github.com/lnm-project/lnm/allowlist"
	"github.com/lnm-project/lnm/appliance"
	"github.com/lnm-project/lnm/config"
	"github.com/lnm-project/lnm/onboard"
)

// maxImportFile bounds the file `lnm allow import` reads: allow lists are kilobytes.
const maxImportFile = 16 << 20

func allowImportCommand(configFlag cli.Flag, stdout, stderr io.Writer) *cli.Command {
	return &cli.Command{
		Name: "import",
		Usage: "add the rules of an Azure IoT Layered Network Management Lnm custom resource (YAML) or a dnsmasq file; " +
			"prints the rules and every field it did not map",
		ArgsUsage: "FILE",
		Flags: []cli.Flag{
			configFlag,
			&cli.BoolFlag{Name: "dry-run", Usage: "print what would be added; change nothing"},
			&cli.StringFlag{Name: "format", Usage: "`FORMAT` of FILE: lnm or dnsmasq; default: told by content"},
		},
		Action: func(c *cli.Context) error {
			args, err := positionals(c, 1, 1, "allow import takes one FILE")
			if err != nil {
				return err
			}
			return allowImport(c, args[0], stdout, stderr)
		},
	}
}

func allowImport(c *cli.Context, file string, stdout, stderr io.Writer) error {
	format := c.String("format")
	if format != "" && format != onboard.FormatLnm && format != onboard.FormatDnsmasq {
		return &exitError{2, fmt.Errorf("--format %q: want lnm or dnsmasq", format)}
	}
	data, err := readImportFile(file)
	if err != nil {
		return &exitError{1, err}
	}
	res, err := onboard.Import(data, format)
	if err != nil {
		return &exitError{2, fmt.Errorf("%s: %w", file, err)}
	}
	res.SetFile(file)
	dry := c.Bool("dry-run")
	cfg, err := loadConfig(c)
	if err != nil {
		if !dry {
			return err
		}
		// A dry run shows the file on a machine without a box; it just cannot compare.
		fmt.Fprintf(stderr, "lnm: %v\nlnm: not compared with the allow list\n", err)
		cfg = nil
	}
	plan := planAdd(res.Rules, cfg)
	if err := writeImport(stdout, file, &res, &plan); err != nil {
		return &exitError{1, err}
	}
	if dry {
		_, err := fmt.Fprintln(stdout, "dry run: nothing written")
		return err
	}
	if err := plan.check(); err != nil {
		return err
	}
	specs := make([]adminapi.RuleSpec, len(plan.add))
	for i, r := range plan.add {
		specs[i] = adminapi.SpecOf(r, "imported from "+r.Origin)
	}
	return addRules(c, cfg, specs, stdout, stderr)
}

func readImportFile(name string) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxImportFile+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxImportFile {
		return nil, fmt.Errorf("%s: larger than %d MiB; not an allow list", name, maxImportFile>>20)
	}
	return data, nil
}

// addPlan splits rules into those to add and those the list already has, and finds the
// ports the rules need that the box does not listen on.
type addPlan struct {
	add      []allowlist.Rule
	existing []string // "RULE (FILE:LINE)" of rules already in the list
	noProxy  map[uint16][]string
	proxies  string // the box's proxy ports, for messages
}

// planAdd compares rules with cfg's list (nil: nothing to compare with): the rules it
// already has (by Rule.Key) and the ports no proxy serves (config's own check).
func planAdd(rules []allowlist.Rule, cfg *config.Config) addPlan {
	var p addPlan
	if cfg == nil {
		p.add = rules
		return p
	}
	have := map[string]string{}
	for i := range cfg.Rules {
		have[cfg.Rules[i].Key()] = cfg.Rules[i].Origin
	}
	p.proxies = cfg.ProxyText()
	for _, r := range rules {
		if origin, ok := have[r.Key()]; ok {
			p.existing = append(p.existing, r.String()+" ("+origin+")")
			continue
		}
		p.add = append(p.add, r)
		for _, port := range cfg.Unserved(&r) {
			if p.noProxy == nil {
				p.noProxy = map[uint16][]string{}
			}
			p.noProxy[port] = append(p.noProxy[port], r.String())
		}
	}
	return p
}

// check refuses a plan the box would refuse, naming what to change first.
func (p *addPlan) check() error {
	if len(p.noProxy) == 0 {
		return nil
	}
	var msgs []string
	for _, port := range slices.Sorted(maps.Keys(p.noProxy)) {
		msgs = append(msgs, fmt.Sprintf("port %d (%s) has no proxy listener (%s): add it to proxy in the config first",
			port, strings.Join(p.noProxy[port], ", "), p.proxies))
	}
	return &exitError{2, errors.New("nothing added: " + strings.Join(msgs, "; "))}
}

// writeImport prints the rules an import found, what it did not map, its warnings, and what
// the list already has.
func writeImport(w io.Writer, file string, res *onboard.ImportResult, p *addPlan) error {
	fmt.Fprintf(w, "%s: %d %s\n", file, len(res.Rules), plural(len(res.Rules), "rule"))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, r := range res.Rules {
		fmt.Fprintf(tw, "  %s\t%s\n", r.String(), strings.TrimPrefix(r.Origin, file+": "))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	section := func(title string, lines []string) {
		if len(lines) == 0 {
			return
		}
		fmt.Fprintf(w, "%s (%d):\n", title, len(lines))
		for _, l := range lines {
			fmt.Fprintf(w, "  %s\n", l)
		}
	}
	section("not mapped", res.Unmapped)
	section("warnings", res.Warnings)
	section("already in the allow list", p.existing)
	var noProxy []string
	for _, port := range slices.Sorted(maps.Keys(p.noProxy)) {
		noProxy = append(noProxy, fmt.Sprintf("port %d: %s (%s)", port, strings.Join(p.noProxy[port], ", "), p.proxies))
	}
	section("ports without a proxy listener", noProxy)
	return nil
}

// addRules adds rules in one change through the running box (POST /v1/allow), or, when no
// box runs, by editing the managed file under its lock: what `allow import` and `allow
// suggest --apply` do. cfg is the loaded config.
func addRules(c *cli.Context, cfg *config.Config, specs []adminapi.RuleSpec, stdout, stderr io.Writer) error {
	if len(specs) == 0 {
		_, err := fmt.Fprintln(stdout, "nothing to add: the allow list has every rule")
		return err
	}
	var ch adminapi.AllowChange
	err := errNoAdmin
	if cfg.Admin != "" {
		ctx, cancel := context.WithTimeout(c.Context, changeTimeout)
		defer cancel()
		client := adminapi.NewClient(cfg.Admin)
		defer client.Close()
		ch, err = client.AllowAdd(ctx, adminapi.AllowAdd{Rules: specs})
	}
	if fallback(err) {
		reason, uid := why(err, cfg), os.Getuid()
		if _, ch, err = appliance.AddManaged(cfg.File, specs, &uid); err == nil {
			fmt.Fprintf(stderr, "lnm: %s; edited the file directly\n", reason)
		}
	}
	if err != nil {
		return changeError(err)
	}
	for _, a := range ch.Added {
		fmt.Fprintf(stdout, "added %s\n", a)
	}
	return reportChange(stdout, &ch, cfg)
}

func allowPresetsCommand(stdout io.Writer) *cli.Command {
	return &cli.Command{
		Name:  "presets",
		Usage: "list the presets `lnm allow add --preset NAME` adds: Microsoft's documented endpoint lists",
		Flags: []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print the presets as one JSON document"}},
		Action: func(c *cli.Context) error {
			if _, err := positionals(c, 0, 0, "allow presets takes no arguments"); err != nil {
				return err
			}
			if c.Bool("json") {
				type preset struct {
					Name        string   `json:"name"`
					Description string   `json:"description"`
					Patterns    []string `json:"patterns"`
				}
				var out []preset
				for _, p := range onboard.Presets() {
					out = append(out, preset{p.Name, p.Description, p.Patterns})
				}
				enc := json.NewEncoder(stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(out)
			}
			for i, p := range onboard.Presets() {
				if i > 0 {
					fmt.Fprintln(stdout)
				}
				fmt.Fprintf(stdout, "%s: %s, %d patterns\n", p.Name, p.Description, len(p.Patterns))
				for _, s := range p.Patterns {
					fmt.Fprintf(stdout, "  %s\n", s)
				}
			}
			return nil
		},
	}
}
