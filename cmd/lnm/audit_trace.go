package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/lnm-project/lnm/audit"
	"github.com/lnm-project/lnm/internal/auditview"
)

// auditTraceCommand is `lnm audit trace`: one connection from the top box's record down to
// the device, through the logs of the boxes below (docs/level-identity.md).
func auditTraceCommand(stdout, stderr io.Writer) *cli.Command {
	return &cli.Command{
		Name:      "trace",
		Usage:     "follow a connection recorded at a parent box down to the device that opened it, through the audit logs of the boxes below (level_identity)",
		ArgsUsage: "SEQ",
		Flags: []cli.Flag{
			&cli.StringSliceFlag{Name: "dir", Required: true, Usage: "an audit log `DIR` (a box's audit directory or a copy), once per box; the first holds the record SEQ"},
			&cli.BoolFlag{Name: "json", Usage: "print the records found as JSON Lines, the first box's first"},
		},
		Action: func(c *cli.Context) error { return auditTrace(c, stdout, stderr) },
	}
}

func auditTrace(c *cli.Context, stdout, stderr io.Writer) error {
	if c.NArg() != 1 {
		return &exitError{2, fmt.Errorf("audit trace takes one argument, the seq of a conn record in the first --dir")}
	}
	seq, err := strconv.ParseUint(c.Args().First(), 10, 64)
	if err != nil || seq == 0 {
		return &exitError{2, fmt.Errorf("audit trace %q: want a record's seq, a number above zero", c.Args().First())}
	}
	dirs := c.StringSlice("dir")
	var corrupt error
	read := func(dir string, f audit.Filter, fn func(*audit.Record) bool) error {
		err := audit.Read(dir, f, fn)
		if errors.Is(err, audit.ErrCorrupt) {
			corrupt = err
			return nil
		}
		return err
	}

	var start *audit.Record
	if err := read(dirs[0], audit.Filter{Kind: audit.KindConn}, func(r *audit.Record) bool {
		if r.Seq == seq {
			start = r
		}
		return r.Seq < seq // the log is in seq order
	}); err != nil {
		return &exitError{1, err}
	}
	if start == nil {
		return &exitError{1, fmt.Errorf("no conn record with seq %d in %s", seq, dirs[0])}
	}
	lookup := func(box string, id uint64, near time.Time) ([]*audit.Record, error) {
		var out []*audit.Record
		// Segments older than that are not read at all.
		f := audit.Filter{Kind: audit.KindConn, Since: near.Add(-auditview.MaxSkew)}
		for _, dir := range dirs {
			err := read(dir, f, func(r *audit.Record) bool {
				if r.Box == box && r.ID == id {
					out = append(out, r)
				}
				return true
			})
			if err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	device, hops, err := auditview.Trace(start, lookup)
	if err != nil {
		return &exitError{1, err}
	}
	out := bufio.NewWriter(stdout)
	defer out.Flush()
	if c.Bool("json") {
		for _, h := range hops {
			for _, r := range []*audit.Record{h.First, h.Close} {
				if r != nil {
					out.Write(append(r.AppendJSON(nil), '\n'))
				}
			}
		}
	} else {
		rd := &auditview.Renderer{Loc: clock.loc}
		if err := rd.WriteTrace(out, device, hops); err != nil {
			return &exitError{1, err}
		}
	}
	return queryDone(corrupt, stderr)
}
