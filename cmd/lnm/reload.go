package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/lnm-project/lnm/appliance"
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
			var out struct {
				Config string `json:"config"`
				Rules  int    `json:"rules"`
				Hash   string `json:"hash"`
			}
			if err := postAdmin(c, appliance.PathReload, nil, &out); err != nil {
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
			if err := postAdmin(c, appliance.PathMode, url.Values{"mode": {mode}}, nil); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "mode %s\n", mode)
			return nil
		},
	}
}

// postAdmin sends POST path?v to the box of the command's config and decodes the answer.
func postAdmin(c *cli.Context, path string, v url.Values, out any) error {
	cfg, err := loadConfig(c)
	if err != nil {
		return err
	}
	if cfg.Admin == "" {
		return &exitError{1, fmt.Errorf("the admin API is off in %s", cfg.File)}
	}
	ctx, cancel := context.WithTimeout(c.Context, changeTimeout)
	defer cancel()
	client := newAdminClient(cfg.Admin)
	defer client.close()
	resp, err := client.do(ctx, http.MethodPost, path, v, nil)
	if err != nil {
		return &exitError{1, err}
	}
	defer resp.Body.Close()
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			return &exitError{1, fmt.Errorf("admin API %s: %w", path, err)}
		}
	}
	return nil
}
