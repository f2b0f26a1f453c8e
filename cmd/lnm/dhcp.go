package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/lnm-project/lnm/adminapi"
	"github.com/lnm-project/lnm/internal/auditview"
)

// dhcpTimeout bounds `lnm dhcp leases`: the box answers from memory.
const dhcpTimeout = 10 * time.Second

func dhcpCommand(configFlag cli.Flag, stdout io.Writer) *cli.Command {
	return &cli.Command{
		Name:  "dhcp",
		Usage: "the box's DHCP server (the dhcp block)",
		Subcommands: []*cli.Command{
			{
				Name:  "leases",
				Usage: "list the leases: address, MAC, device name, state and when it ends",
				Flags: []cli.Flag{
					configFlag,
					&cli.BoolFlag{Name: "json", Usage: "print the leases as one JSON document, as the box sends it"},
				},
				Action: func(c *cli.Context) error {
					if c.NArg() > 0 {
						return &exitError{2, fmt.Errorf("dhcp leases takes no arguments, got %q", c.Args().Slice())}
					}
					cfg, err := loadConfig(c)
					if err != nil {
						return err
					}
					if cfg.DHCP == nil {
						return &exitError{1, fmt.Errorf("%s has no dhcp block: this box serves no DHCP", cfg.File)}
					}
					if cfg.Admin == "" {
						return &exitError{1, fmt.Errorf("the admin API is off in %s: no leases to show", cfg.File)}
					}
					ctx, cancel := context.WithTimeout(c.Context, dhcpTimeout)
					defer cancel()
					client := adminapi.NewClient(cfg.Admin)
					defer client.Close()
					leases, err := client.DHCPLeases(ctx)
					var se *adminapi.StatusError
					if errors.As(err, &se) && se.Code == http.StatusNotFound {
						return &exitError{1, fmt.Errorf("the running box serves no DHCP (restart it after adding the dhcp block): %w", err)}
					}
					if err != nil {
						return &exitError{1, err}
					}
					if c.Bool("json") {
						enc := json.NewEncoder(stdout)
						enc.SetIndent("", "  ")
						err = enc.Encode(leases)
					} else {
						err = writeLeases(stdout, leases, time.Now(), clock.loc)
					}
					if err != nil {
						return &exitError{1, err}
					}
					return nil
				},
			},
		},
	}
}

// writeLeases prints the leases as a table for people, by address.
func writeLeases(w io.Writer, l adminapi.DHCPLeases, now time.Time, loc *time.Location) error {
	out := bufio.NewWriter(w)
	if len(l.Leases) == 0 {
		fmt.Fprintf(out, "no leases on %s\n", auditview.Text(l.Interface))
		return out.Flush()
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ADDRESS\tMAC\tDEVICE\tSTATE\tUNTIL")
	for _, x := range l.Leases {
		until := x.Expires.In(loc).Format("2006-01-02 15:04:05")
		if x.State == "bound" {
			until += " (in " + x.Expires.Sub(now).Round(time.Second).String() + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", x.Addr, auditview.Text(x.MAC), auditview.OrDash(auditview.Field(x.Device)), auditview.Text(x.State), until)
	}
	tw.Flush()
	return out.Flush()
}
