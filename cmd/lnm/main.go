// Command lnm is the layered-network-management appliance: one program that answers DNS for
// an allow list and forwards the TLS streams that follow, level by level.
//
// Exit codes: 0 success, 1 runtime failure, 2 bad configuration or usage.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/lmittmann/tint"
	"github.com/urfave/cli/v2"

	"github.com/lnm-project/lnm/appliance"
	"github.com/lnm-project/lnm/config"
	"github.com/lnm-project/lnm/store"
)

const defaultConfig = "/etc/lnm/lnm.conf"

// exitError carries an exit code through urfave/cli.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func main() {
	os.Exit(run(os.Args, os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	app := newApp(stdout, stderr)
	err := app.Run(args)
	if err == nil {
		return 0
	}
	fmt.Fprintf(stderr, "lnm: %v\n", err)
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return 2 // urfave/cli usage errors
}

func newApp(stdout, stderr io.Writer) *cli.App {
	configFlag := &cli.StringFlag{
		Name:    "config",
		Aliases: []string{"c"},
		Value:   defaultConfig,
		EnvVars: []string{"LNM_CONFIG"},
		Usage:   "configuration file",
	}
	return &cli.App{
		Name:      "lnm",
		Usage:     "layered network management: one allow list for DNS and TLS forwarding",
		Writer:    stdout,
		ErrWriter: stderr,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "log-level", Value: "info", Usage: "debug, info, warn or error"},
			&cli.StringFlag{Name: "log-format", Value: "auto", Usage: "auto (colour on a terminal, JSON otherwise), text or json"},
		},
		ExitErrHandler: func(*cli.Context, error) {}, // run() prints and picks the code
		Commands: []*cli.Command{
			{
				Name:  "run",
				Usage: "run the appliance in the foreground",
				Flags: []cli.Flag{configFlag,
					&cli.StringFlag{Name: "pprof", Hidden: true, Usage: "serve net/http/pprof on this loopback ADDR:PORT"}},
				Action: func(c *cli.Context) error {
					log, err := newLogger(c.String("log-level"), c.String("log-format"), stderr)
					if err != nil {
						return &exitError{2, err}
					}
					if a := c.String("pprof"); a != "" {
						ap, err := pprofAddr(a)
						if err == nil {
							err = servePprof(ap, log)
						}
						if err != nil {
							return &exitError{2, err}
						}
					}
					return runAppliance(c.String("config"), log)
				},
			},
			{
				Name:  "check",
				Usage: "parse and validate the configuration, print the effective settings and rules in match order",
				Flags: []cli.Flag{configFlag},
				Action: func(c *cli.Context) error {
					cfg, err := config.Load(c.String("config"))
					if err != nil {
						return &exitError{2, err}
					}
					fmt.Fprint(stdout, cfg.Summary())
					return nil
				},
			},
			auditCommand(configFlag, stdout, stderr),
			statusCommand(configFlag, stdout),
			reloadCommand(configFlag, stdout),
			modeCommand(configFlag, stdout),
			allowCommand(configFlag, stdout, stderr),
			dhcpCommand(configFlag, stdout),
			consoleCommand(configFlag, stdout, stderr),
			versionCommand(stdout),
			completionCommand(stdout),
			manCommand(stdout),
		},
	}
}

// runAppliance loads the config, starts every listener and serves until SIGINT or SIGTERM,
// telling systemd how it goes when run as a notify service (see notify.go).
func runAppliance(path string, log *slog.Logger) error {
	cfg, err := config.Load(path)
	if err != nil {
		return &exitError{2, err}
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		// A full store then costs its bound plus a fixed allowance, not twice its bound.
		debug.SetMemoryLimit(store.MemoryLimit(cfg.StoreMemory))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	appliance.Version = buildVersion()
	rt, err := appliance.Start(cfg, log)
	if err != nil {
		return &exitError{1, err}
	}
	con, err := startConsole(cfg, log)
	if err != nil {
		rt.Close()
		return &exitError{1, err}
	}
	svc := &service{rt: rt, log: log}
	rt.NotifyReload(svc.reload)
	// SIGHUP reloads; a bad file is logged with FILE:LINE and the running config stays.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for range hup {
			next, err := config.Load(path)
			if err != nil {
				svc.reloadRefused()
			} else {
				err = rt.Reload(next, appliance.Caller{})
			}
			if err != nil {
				log.Error("SIGHUP: reload refused; the running configuration keeps serving", "err", err)
			}
		}
	}()
	watchCtx, stopWatch := context.WithCancel(ctx)
	watchDone := make(chan struct{})
	go func() { defer close(watchDone); svc.watchdog(watchCtx) }()
	log.Info("lnm running", "version", buildVersion(), "config", path, "level", cfg.Level)
	svc.ready()
	<-ctx.Done()
	svc.stopping()
	stopWatch()
	<-watchDone
	log.Info("stopping")
	start := time.Now()
	if con != nil {
		con.Close() // Live pages end before the box's follow streams are cut
	}
	err = rt.Close()
	log.Info("stopped", "took", time.Since(start).Round(time.Millisecond).String())
	if err != nil {
		return &exitError{1, err}
	}
	return nil
}

// newLogger builds the process logger: tint's coloured text for people at a terminal, JSON
// for journald and log shippers.
func newLogger(level, format string, w io.Writer) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	switch format {
	case "auto":
		format = "json"
		if isTerminal(w) {
			format = "tint"
		}
	case "text":
		format = "tint"
	case "json":
	default:
		return nil, fmt.Errorf("--log-format %q: want auto, text or json", format)
	}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: lv})), nil
	}
	return slog.New(tint.NewTextHandler(w, &tint.Options{
		Level:      lv,
		TimeFormat: time.DateTime,
		NoColor:    !isTerminal(w),
	})), nil
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
