package main

import (
	"context"
	"fmt"
	"io"
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
				err = auditview.WriteStatus(stdout, st, clock.loc)
			}
			if err != nil {
				return &exitError{1, err}
			}
			return nil
		},
	}
}
