package main

// Shell completion and the man page, generated from the command definitions so they cannot
// drift from them. `make deb` runs the hidden commands `lnm completion bash|zsh` and
// `lnm man` at build time and packages their output.

import (
	"fmt"
	"io"

	"github.com/urfave/cli/v2"

	"github.com/lnm-project/lnm/internal/completion"
)

// completionCommand prints a completion script for bash or zsh.
func completionCommand(stdout io.Writer) *cli.Command {
	return &cli.Command{
		Name:      "completion",
		Usage:     "print a shell completion script (bash or zsh)",
		ArgsUsage: "bash|zsh",
		Hidden:    true,
		Action: func(c *cli.Context) error {
			args, err := positionals(c, 1, 1, "completion: want bash or zsh")
			if err != nil {
				return err
			}
			switch args[0] {
			case "bash":
				completion.Bash(stdout, c.App)
			case "zsh":
				completion.Zsh(stdout, c.App)
			default:
				return &exitError{2, fmt.Errorf("completion: want bash or zsh, got %q", args[0])}
			}
			return nil
		},
	}
}

// manCommand prints the man page lnm(1) in roff.
func manCommand(stdout io.Writer) *cli.Command {
	return &cli.Command{
		Name:   "man",
		Usage:  "print the man page lnm(1)",
		Hidden: true,
		Action: func(c *cli.Context) error {
			page, err := c.App.ToManWithSection(1)
			if err != nil {
				return &exitError{1, fmt.Errorf("man: %w", err)}
			}
			_, err = io.WriteString(stdout, page)
			return err
		},
	}
}
