package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"

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
				pw, err := readPassword(stdin, stderr, args[0])
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
				if err := ownLikeParent(dir, path); err != nil {
					return &exitError{1, err}
				}
				fmt.Fprintf(stdout, "user %s (%s) written to %s\n", args[0], role, path)
				return nil
			},
		}},
	}
}

// ownLikeParent gives the console directory and the users file the owner of the directory
// above (the service's state directory, lnm:lnm) when root made them: the service must read
// the file that `sudo lnm console passwd` wrote.
func ownLikeParent(dir, file string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	var st unix.Stat_t
	if err := unix.Stat(filepath.Dir(dir), &st); err != nil {
		return fmt.Errorf("console directory: %w", err)
	}
	for _, p := range []string{dir, file} {
		if err := os.Lchown(p, int(st.Uid), int(st.Gid)); err != nil {
			return fmt.Errorf("console users: %w", err)
		}
	}
	return nil
}

// consoleDir is the console's directory: the configured one, or the default when the config
// has no console yet (users may be made before it is turned on).
func consoleDir(cfg *config.Config) string {
	if cfg.Console.Dir != "" {
		return cfg.Console.Dir
	}
	return config.DefaultConsoleDir
}

// readPassword reads the password: on a terminal twice with echo off, otherwise one line.
func readPassword(r io.Reader, prompt io.Writer, user string) (string, error) {
	f, ok := r.(*os.File)
	if ok {
		if t, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS); err == nil {
			quiet := *t
			quiet.Lflag &^= unix.ECHO
			if err := unix.IoctlSetTermios(int(f.Fd()), unix.TCSETS, &quiet); err == nil {
				defer unix.IoctlSetTermios(int(f.Fd()), unix.TCSETS, t)
				br := bufio.NewReader(f)
				fmt.Fprintf(prompt, "password for %s: ", user)
				a, err := readLine(br)
				fmt.Fprintf(prompt, "\nagain: ")
				b, err2 := readLine(br)
				fmt.Fprintln(prompt)
				if err = errors.Join(err, err2); err != nil {
					return "", err
				}
				if a != b {
					return "", errors.New("the passwords differ")
				}
				return a, nil
			}
		}
	}
	return readLine(bufio.NewReader(r))
}

func readLine(br *bufio.Reader) (string, error) {
	s, err := br.ReadString('\n')
	if err != nil && !(errors.Is(err, io.EOF) && s != "") {
		return "", fmt.Errorf("reading the password: %w", err)
	}
	return strings.TrimRight(s, "\r\n"), nil
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
