package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/lnm-project/lnm/adminapi"
	"github.com/lnm-project/lnm/allowlist"
	"github.com/lnm-project/lnm/audit"
	"github.com/lnm-project/lnm/config"
	"github.com/lnm-project/lnm/dhcp"
	"github.com/lnm-project/lnm/internal/auditview"
	"github.com/lnm-project/lnm/store"
)

// clock is the time the commands take relative times from and the zone they print in. Tests
// fix both for golden output.
var clock = struct {
	now func() time.Time
	loc *time.Location
}{time.Now, time.Local}

// interruptContext ends when the user asks `lnm audit follow` to stop. Tests may replace it.
var interruptContext = func(parent context.Context) (context.Context, context.CancelFunc) {
	return signal.NotifyContext(parent, os.Interrupt, syscall.SIGTERM)
}

// seqBatch is how many linked queries one GET /v1/audit?seq=… asks for, keeping URLs short.
const seqBatch = 256

func auditCommand(configFlag cli.Flag, stdout, stderr io.Writer) *cli.Command {
	filters := func(withRange bool) []cli.Flag {
		var fs []cli.Flag
		if withRange {
			fs = append(fs,
				&cli.StringFlag{Name: "since", Usage: "records at or after `WHEN`: a duration before now (90s, 1h, 7d), an RFC 3339 time, or a local 2006-01-02 15:04"},
				&cli.StringFlag{Name: "until", Usage: "records before `WHEN`, written as for --since"},
			)
		}
		return append(fs,
			&cli.StringFlag{Name: "client", Usage: "the device's `IP` address or a CIDR"},
			&cli.StringFlag{Name: "origin", Usage: "connections a child box forwarded for the device at `IP` (or in a CIDR): its level-identity origin"},
			&cli.StringFlag{Name: "device", Usage: "the device's `NAME`: the host name of its DHCP lease from this box"},
			&cli.StringFlag{Name: "name", Usage: "an allow-list `PATTERN` matched against DNS names and SNIs (api.example.com, *.example.com, .example.com)"},
			&cli.StringFlag{Name: "verdict", Usage: "records with this `VERDICT`: allow, deny (includes refused), would-deny or refused"},
			&cli.StringFlag{Name: "kind", Usage: "records of this `KIND`: dns, conn, config, summary or dhcp"},
			&cli.BoolFlag{Name: "unlinked", Usage: "only connections no DNS query of this box led to"},
			&cli.BoolFlag{Name: "json", Usage: "print the records as JSON Lines"},
			configFlag,
		)
	}
	return &cli.Command{
		Name:  "audit",
		Usage: "read the audit trail: which device asked for and connected to what",
		Subcommands: []*cli.Command{
			{
				Name:  "query",
				Usage: "print the records that match, oldest first, from the running box (or its log files when it is not running)",
				Flags: append(filters(true),
					&cli.IntFlag{Name: "limit", Usage: "at most the newest `N` records; 0: all"},
					&cli.StringFlag{Name: "dir", Usage: "read the audit log files in `DIR` alone (a copied log), not the box"},
				),
				Action: func(c *cli.Context) error { return auditQuery(c, stdout, stderr) },
			},
			{
				Name:   "follow",
				Usage:  "print records as the running box makes them, until interrupted",
				Flags:  filters(false),
				Action: func(c *cli.Context) error { return auditFollow(c, stdout) },
			},
			auditTraceCommand(stdout, stderr),
		},
	}
}

// parseFilter reads the filter flags. Errors name the flag and are usage errors (exit 2).
func parseFilter(c *cli.Context, now time.Time) (audit.Filter, error) {
	var f audit.Filter
	usage := func(format string, args ...any) error {
		return &exitError{2, fmt.Errorf(format, args...)}
	}
	var err error
	for _, t := range []struct {
		flag string
		dst  *time.Time
	}{{"since", &f.Since}, {"until", &f.Until}} {
		if !c.IsSet(t.flag) {
			continue
		}
		if *t.dst, err = parseWhen(c.String(t.flag), now); err != nil {
			return f, usage("--%s %q: %v", t.flag, c.String(t.flag), err)
		}
	}
	if !f.Since.IsZero() && !f.Until.IsZero() && !f.Since.Before(f.Until) {
		return f, usage("--since %s is not before --until %s", f.Since.Format(time.RFC3339), f.Until.Format(time.RFC3339))
	}
	if s := c.String("client"); c.IsSet("client") {
		if f.Client, err = adminapi.ParseClient(s); err != nil {
			return f, usage("--client %q: want an address or CIDR", s)
		}
	}
	if s := c.String("origin"); c.IsSet("origin") {
		if f.Origin, err = adminapi.ParseClient(s); err != nil {
			return f, usage("--origin %q: want an address or CIDR", s)
		}
	}
	if s := c.String("device"); c.IsSet("device") {
		// Device names are recorded as one lower-case label (dhcp.CleanHostName).
		if f.Device = dhcp.CleanHostName(s); f.Device == "" || f.Device != strings.ToLower(s) {
			return f, usage("--device %q: want a host name (letters, digits, '-' and '_')", s)
		}
	}
	if s := c.String("name"); c.IsSet("name") {
		p, err := allowlist.ParsePattern(s)
		if err != nil {
			return f, usage("--name: %v", err)
		}
		f.Name = &p
	}
	switch s := c.String("verdict"); s {
	case "", audit.VerdictAllow, audit.VerdictDeny, audit.VerdictWouldDeny, audit.VerdictRefused:
		f.Verdict = s
	default:
		return f, usage("--verdict %q: want allow, deny, would-deny or refused", s)
	}
	switch k := audit.Kind(c.String("kind")); k {
	case "", audit.KindDNS, audit.KindConn, audit.KindConfig, audit.KindSummary, audit.KindDHCP:
		f.Kind = k
	default:
		return f, usage("--kind %q: want dns, conn, config, summary or dhcp", k)
	}
	f.Unlinked = c.Bool("unlinked")
	if f.Unlinked && f.Kind != "" && f.Kind != audit.KindConn {
		return f, usage("--unlinked selects conn records; it cannot be combined with --kind %s", f.Kind)
	}
	if f.Limit = c.Int("limit"); f.Limit < 0 {
		return f, usage("--limit %d: want 0 (all) or more", f.Limit)
	}
	return f, nil
}

// parseWhen reads a point in time: a duration before now ("90s", "1h30m", "7d"), an RFC 3339
// time, or a local date or date and time ("2026-03-01", "2026-03-01 10:00").
func parseWhen(s string, now time.Time) (time.Time, error) {
	if d, ok := parseAgo(s); ok {
		return now.Add(-d), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	for _, layout := range []string{
		"2006-01-02T15:04:05.999999999", "2006-01-02 15:04:05.999999999",
		"2006-01-02T15:04", "2006-01-02 15:04", "2006-01-02",
	} {
		if t, err := time.ParseInLocation(layout, s, clock.loc); err == nil {
			return t, nil
		}
	}
	return time.Time{}, errors.New("want a duration before now (90s, 1h, 7d) or a time (RFC 3339, or local 2006-01-02 15:04)")
}

// parseAgo reads a positive Go duration, or whole days as "7d".
func parseAgo(s string) (time.Duration, bool) {
	if n, ok := strings.CutSuffix(s, "d"); ok {
		days, err := strconv.Atoi(n)
		if err != nil || days <= 0 || days > 365*100 {
			return 0, false
		}
		return time.Duration(days) * 24 * time.Hour, true
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, false
	}
	return d, true
}

// loadConfig loads the box's config, as `lnm run` would.
func loadConfig(c *cli.Context) (*config.Config, error) {
	cfg, err := config.Load(c.String("config"))
	if err != nil {
		return nil, &exitError{2, err}
	}
	return cfg, nil
}

// source is where records come from: the running box or log files.
type source interface {
	// each calls fn with the records f selects, in seq order; with f.Limit, the newest.
	each(ctx context.Context, f audit.Filter, fn func(*audit.Record) error) error
	// queries returns the dns records with the given seqs, which conns between from and to
	// link to. Records that no longer exist are left out.
	queries(ctx context.Context, seqs []uint64, from, to time.Time) (map[uint64]*audit.Record, error)
	close()
}

type boxSource struct{ c *adminapi.Client }

func (s boxSource) each(ctx context.Context, f audit.Filter, fn func(*audit.Record) error) error {
	return s.c.Records(ctx, adminapi.Query{Filter: f}, fn)
}

func (s boxSource) close() { s.c.Close() }

func (s boxSource) queries(ctx context.Context, seqs []uint64, _, _ time.Time) (map[uint64]*audit.Record, error) {
	found := make(map[uint64]*audit.Record, len(seqs))
	for batch := range slices.Chunk(seqs, seqBatch) {
		err := s.c.Records(ctx, adminapi.Query{Seqs: batch}, func(r *audit.Record) error {
			found[r.Seq] = r
			return nil
		})
		if err != nil {
			return found, err
		}
	}
	return found, nil
}

// fileSource reads an audit log directory. A torn or corrupt line is skipped and reported
// after everything else was read (audit.ErrCorrupt).
type fileSource struct {
	dir        string
	linkWindow time.Duration // how long before a conn its linked query may be
}

func (s fileSource) each(_ context.Context, f audit.Filter, fn func(*audit.Record) error) error {
	if f.Limit > 0 {
		recs, err := audit.ReadNewest(s.dir, f, f.Limit)
		for i := range recs {
			if ferr := fn(&recs[i]); ferr != nil {
				return ferr
			}
		}
		return err
	}
	var ferr error
	err := audit.Read(s.dir, f, func(r *audit.Record) bool {
		ferr = fn(r)
		return ferr == nil
	})
	if ferr != nil {
		return ferr
	}
	return err
}

func (fileSource) close() {}

func (s fileSource) queries(_ context.Context, seqs []uint64, from, to time.Time) (map[uint64]*audit.Record, error) {
	want := make(map[uint64]bool, len(seqs))
	for _, n := range seqs {
		want[n] = true
	}
	found := make(map[uint64]*audit.Record, len(seqs))
	f := audit.Filter{Kind: audit.KindDNS, Since: from.Add(-s.linkWindow), Until: to.Add(time.Millisecond)}
	err := audit.Read(s.dir, f, func(r *audit.Record) bool {
		if want[r.Seq] {
			found[r.Seq] = r
		}
		return len(found) < len(want)
	})
	if errors.Is(err, audit.ErrCorrupt) {
		err = nil // each reported it already
	}
	return found, err
}

// pickSource decides where `lnm audit query` reads: --dir, else the box, else (the box not
// answering, or its admin API off) the box's log files, said on stderr.
func pickSource(c *cli.Context, stderr io.Writer) (source, error) {
	if dir := c.String("dir"); dir != "" {
		if _, err := os.Stat(dir); err != nil {
			return nil, &exitError{1, fmt.Errorf("--dir: %w", err)}
		}
		window := store.DefaultLinkWindow
		if c.IsSet("config") {
			if cfg, err := config.Load(c.String("config")); err == nil {
				window = cfg.LinkWindow
			}
		}
		return fileSource{dir, window}, nil
	}
	cfg, err := loadConfig(c)
	if err != nil {
		return nil, err
	}
	files := fileSource{cfg.AuditDir, cfg.LinkWindow}
	if cfg.Admin == "" {
		if cfg.AuditDir == "" {
			return nil, &exitError{1, fmt.Errorf("%s turns both the admin API and the audit log off: there are no records to read", cfg.File)}
		}
		fmt.Fprintf(stderr, "lnm: the admin API is off in %s; reading the audit log in %s\n", cfg.File, cfg.AuditDir)
		return files, nil
	}
	box := boxSource{adminapi.NewClient(cfg.Admin)}
	if fi, err := os.Stat(cfg.AuditDir); cfg.AuditDir == "" || err != nil || !fi.IsDir() {
		return box, nil
	}
	return &boxOrFiles{box: box, files: files, stderr: stderr}, nil
}

// boxOrFiles asks the box, and reads its log files when the box does not answer: older
// records are all there (the newest may still wait for their fsync).
type boxOrFiles struct {
	box      boxSource
	files    fileSource
	stderr   io.Writer
	useFiles bool
}

func (s *boxOrFiles) each(ctx context.Context, f audit.Filter, fn func(*audit.Record) error) error {
	if !s.useFiles {
		// An unreachable box fails at the dial, before fn saw any record.
		err := s.box.each(ctx, f, fn)
		var unreachable *adminapi.UnreachableError
		if !errors.As(err, &unreachable) {
			return err
		}
		fmt.Fprintf(s.stderr, "lnm: %v\nlnm: reading the audit log in %s instead\n", err, s.files.dir)
		s.useFiles = true
	}
	return s.files.each(ctx, f, fn)
}

func (s *boxOrFiles) close() { s.box.close() }

func (s *boxOrFiles) queries(ctx context.Context, seqs []uint64, from, to time.Time) (map[uint64]*audit.Record, error) {
	if s.useFiles {
		return s.files.queries(ctx, seqs, from, to)
	}
	return s.box.queries(ctx, seqs, from, to)
}

func auditQuery(c *cli.Context, stdout, stderr io.Writer) error {
	if c.NArg() > 0 {
		return &exitError{2, fmt.Errorf("audit query takes no arguments, got %q", c.Args().Slice())}
	}
	f, err := parseFilter(c, clock.now())
	if err != nil {
		return err
	}
	ctx := c.Context
	src, err := pickSource(c, stderr)
	if err != nil {
		return err
	}
	defer src.close()
	out := bufio.NewWriterSize(stdout, 64<<10)
	defer out.Flush()
	if c.Bool("json") {
		var line []byte
		err = src.each(ctx, f, func(r *audit.Record) error {
			line = append(r.AppendJSON(line[:0]), '\n')
			_, err := out.Write(line)
			return err
		})
		return queryDone(err, stderr)
	}

	var recs []*audit.Record
	err = src.each(ctx, f, func(r *audit.Record) error {
		recs = append(recs, r)
		return nil
	})
	if err != nil && !errors.Is(err, audit.ErrCorrupt) {
		return queryDone(err, stderr)
	}
	rd := &auditview.Renderer{Loc: clock.loc, Queries: linkedQueries(ctx, src, recs, stderr)}
	rows := make([]auditview.Row, len(recs))
	for i, r := range recs {
		rows[i] = rd.Row(r)
	}
	if werr := auditview.WriteTable(out, rows); werr != nil {
		return &exitError{1, werr}
	}
	return queryDone(err, stderr)
}

// queryDone turns the read's error into the exit: corrupt lines skipped are a warning.
func queryDone(err error, stderr io.Writer) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, audit.ErrCorrupt):
		fmt.Fprintf(stderr, "lnm: warning: %v\n", err)
		return nil
	}
	var ee *exitError
	if errors.As(err, &ee) {
		return err
	}
	return &exitError{1, err}
}

// linkedQueries finds the dns records the conns in recs link to: in recs itself, or asked
// for. A failure to fetch them is a warning; the table then says "not found".
func linkedQueries(ctx context.Context, src source, recs []*audit.Record, stderr io.Writer) map[uint64]*audit.Record {
	have := make(map[uint64]*audit.Record)
	for _, r := range recs {
		if r.Kind == audit.KindDNS {
			have[r.Seq] = r
		}
	}
	var missing []uint64
	var from, to time.Time
	seen := make(map[uint64]bool)
	for _, r := range recs {
		if r.Kind != audit.KindConn || r.QuerySeq == 0 || have[r.QuerySeq] != nil || seen[r.QuerySeq] {
			continue
		}
		seen[r.QuerySeq] = true
		missing = append(missing, r.QuerySeq)
		if from.IsZero() || r.Time.Before(from) {
			from = r.Time
		}
		if r.Time.After(to) {
			to = r.Time
		}
	}
	if len(missing) == 0 {
		return have
	}
	slices.Sort(missing)
	found, err := src.queries(ctx, missing, from, to)
	if err != nil {
		fmt.Fprintf(stderr, "lnm: warning: looking up linked queries: %v\n", err)
	}
	for n, r := range found {
		have[n] = r
	}
	return have
}

// followCache bounds the dns records `lnm audit follow` remembers for linking.
const followCache = 4096

func auditFollow(c *cli.Context, stdout io.Writer) error {
	if c.NArg() > 0 {
		return &exitError{2, fmt.Errorf("audit follow takes no arguments, got %q", c.Args().Slice())}
	}
	f, err := parseFilter(c, clock.now())
	if err != nil {
		return err
	}
	cfg, err := loadConfig(c)
	if err != nil {
		return err
	}
	if cfg.Admin == "" {
		return &exitError{1, fmt.Errorf("the admin API is off in %s: there is nothing to follow", cfg.File)}
	}
	ctx, stop := interruptContext(c.Context)
	defer stop()
	client := adminapi.NewClient(cfg.Admin)
	defer client.Close()
	out := bufio.NewWriter(stdout)
	defer out.Flush()
	asJSON := c.Bool("json")
	rd := &auditview.Renderer{Loc: clock.loc, Queries: make(map[uint64]*audit.Record)}
	var line []byte
	err = client.Follow(ctx, f, func() error {
		if !asJSON {
			if err := auditview.WriteRow(out, auditview.Header, auditview.FollowWidths); err != nil {
				return err
			}
		}
		return out.Flush()
	}, func(r *audit.Record) error {
		if asJSON {
			line = append(r.AppendJSON(line[:0]), '\n')
			if _, err := out.Write(line); err != nil {
				return err
			}
			return out.Flush()
		}
		if r.Kind == audit.KindDNS {
			if len(rd.Queries) >= followCache {
				clear(rd.Queries)
			}
			rd.Queries[r.Seq] = r
		}
		if n := r.QuerySeq; r.Kind == audit.KindConn && n != 0 && rd.Queries[n] == nil {
			// The filter may leave the query out of the stream; ask for it, briefly.
			lctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			found, _ := boxSource{client}.queries(lctx, []uint64{n}, r.Time, r.Time)
			cancel()
			if q := found[n]; q != nil {
				rd.Queries[n] = q
			}
		}
		if err := auditview.WriteRow(out, rd.Row(r), auditview.FollowWidths); err != nil {
			return err
		}
		return out.Flush()
	})
	switch {
	case ctx.Err() != nil && c.Context.Err() == nil:
		return nil // interrupted: the normal way to stop
	case err != nil:
		return &exitError{1, err}
	}
	return &exitError{1, fmt.Errorf("the box at %s closed the stream (lnm stopped?)", cfg.Admin)}
}
