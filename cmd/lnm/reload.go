package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/lnm-project/lnm/adminapi"
)

// changeTimeout bounds a reload or mode change: the box validates and applies in memory.
const changeTimeout = 30 * time.Second

// reloadCommand asks the running box to read its config file again. The box checks the file
// first and keeps the running configuration when it has errors.
func reloadCommand(configFlag cli.Flag, stdout io.Writer) *cli.Command {
	return &cli.Command{
		Name:  "reload",
		Usage: "make the running box read its config again (like SIGHUP); a bad file is refused with FILE:LINE",
		Flags: []cli.Flag{configFlag},
		Action: func(c *cli.Context) error {
			var out adminapi.ReloadReply
			err := withAdmin(c, func(ctx context.Context, client *adminapi.Client) (err error) {
				out, err = client.Reload(ctx)
				return err
			})
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "reloaded %s: %d rules, list %s\n", out.Config, out.Rules, out.Hash)
			return nil
		},
	}
}

// modeCommand switches learn and enforce mode at run time.
func modeCommand(configFlag cli.Flag, stdout io.Writer) *cli.Command {
	return &cli.Command{
		Name:      "mode",
		Usage:     "switch the running box to learn mode (nothing blocked, denials recorded as would-deny) or enforce",
		ArgsUsage: "learn|enforce",
		Flags:     []cli.Flag{configFlag},
		Action: func(c *cli.Context) error {
			args, err := positionals(c, 1, 1, "mode: want learn or enforce")
			if err != nil {
				return err
			}
			mode := args[0]
			if mode != "learn" && mode != "enforce" {
				return &exitError{2, fmt.Errorf("mode: want learn or enforce, got %q", mode)}
			}
			err = withAdmin(c, func(ctx context.Context, client *adminapi.Client) error {
				_, err := client.SetMode(ctx, mode == "learn")
				return err
			})
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "mode %s\n", mode)
			return nil
		},
	}
}

// withAdmin calls fn with a client for the box of the command's config, within changeTimeout.
func withAdmin(c *cli.Context, fn func(context.Context, *adminapi.Client) error) error {
	cfg, err := loadConfig(c)
	if err != nil {
		return err
	}
	if cfg.Admin == "" {
		return &exitError{1, fmt.Errorf("the admin API is off in %s", cfg.File)}
	}
	ctx, cancel := context.WithTimeout(c.Context, changeTimeout)
	defer cancel()
	client := adminapi.NewClient(cfg.Admin)
	defer client.Close()
	if err := fn(ctx, client); err != nil {
		return &exitError{1, err}
	}
	return nil
}
