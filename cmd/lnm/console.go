package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/urfave/cli/v2"

	"github.com/lnm-project/lnm/adminapi"
	"github.com/lnm-project/lnm/config"
	"github.com/lnm-project/lnm/console"
)

// stdin is where `lnm console passwd` reads the password; tests replace it.
var stdin io.Reader = os.Stdin

func consoleCommand(configFlag cli.Flag, stdout, stderr io.Writer) *cli.Command {
	return &cli.Command{
		Name:  "console",
		Usage: "manage the web console's users",
		Subcommands: []*cli.Command{{
			Name:      "passwd",
			Usage:     "set a console user's password (read from standard input; twice, without echo, on a terminal) and role",
			ArgsUsage: "USER",
			Flags: []cli.Flag{configFlag,
				&cli.StringFlag{Name: "role", Value: string(console.RoleViewer), Usage: "viewer (sees every page) or admin (also changes the list and the mode)"},
			},
			Action: func(c *cli.Context) error {
				args, err := positionals(c, 1, 1, "console passwd: want one user name")
				if err != nil {
					return err
				}
				role, err := console.ParseRole(c.String("role"))
				if err != nil {
					return &exitError{2, fmt.Errorf("--role: %v", err)}
				}
				if err := adminapi.CheckUser(args[0]); err != nil {
					return &exitError{2, err}
				}
				cfg, err := loadConfig(c)
				if err != nil {
					return err
				}
				dir := consoleDir(cfg)
				pw, err := console.ReadPassword(stdin, stderr, args[0])
				if err != nil {
					return &exitError{1, err}
				}
				if err := os.MkdirAll(dir, 0o700); err != nil {
					return &exitError{1, fmt.Errorf("console directory: %w", err)}
				}
				path := filepath.Join(dir, console.UsersFile)
				if err := console.SetPassword(path, args[0], role, pw); err != nil {
					return &exitError{1, err}
				}
				if err := console.OwnLikeParent(dir, path); err != nil {
					return &exitError{1, err}
				}
				fmt.Fprintf(stdout, "user %s (%s) written to %s\n", args[0], role, path)
				return nil
			},
		}},
	}
}

// consoleDir is the console's directory: the configured one, or the default when the config
// has no console yet (users may be made before it is turned on).
func consoleDir(cfg *config.Config) string {
	if cfg.Console.Dir != "" {
		return cfg.Console.Dir
	}
	return config.DefaultConsoleDir
}

// startConsole serves the web console when the config has one; nil when it has none.
func startConsole(cfg *config.Config, log *slog.Logger) (*console.Server, error) {
	if !cfg.Console.Addr.IsValid() {
		return nil, nil
	}
	box := cfg.Name
	if box == "" {
		box, _ = os.Hostname()
	}
	if err := os.MkdirAll(cfg.Console.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("console: %w", err)
	}
	c, err := console.New(console.Options{
		Dir: cfg.Console.Dir, CertFile: cfg.Console.Cert, KeyFile: cfg.Console.Key,
		Admin: adminapi.NewClient(cfg.Admin), Box: box, Log: log,
	})
	if err != nil {
		return nil, err
	}
	if err := c.Listen(cfg.Console.Addr.String()); err != nil {
		return nil, err
	}
	log.Info("console listening", "addr", cfg.Console.Addr, "dir", cfg.Console.Dir)
	return c, nil
}
