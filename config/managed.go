package config

// The managed rules file holds the rules that `lnm allow add/remove/import/suggest` write, next
// to the config (/etc/lnm/lnm.conf → /etc/lnm/lnm.allow), so that hand-written comments in
// lnm.conf are never rewritten. It has the syntax of the lines inside allow { ... }, one rule
// per line, with the comment lines directly above a rule kept as its note.
//
// Every edit runs under an flock of the adjacent lock file (lnm.allow.lock) for the whole
// read-modify-write, so concurrent edits from the CLI and the box serialize. The new text goes
// to a temp file in the same directory, is fsynced and renamed over the old one, and the
// directory is fsynced: a reader, or a crash at any point, sees the old file or the new one,
// never a mix.

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/coredns/caddy/caddyfile"
	"golang.org/x/sys/unix"

	"github.com/lnm-project/lnm/allowlist"
	"github.com/lnm-project/lnm/internal/atomicfile"
)

// managedHeader opens every managed file. Reading drops these lines wherever they appear, so
// they never become a rule's note.
var managedHeader = []string{
	"# This file is managed by `lnm allow` (add, remove, import, suggest --apply) and rewritten",
	"# on every change; only the comment lines directly above a rule are kept. Write rules by",
	managedSyntaxLine + allowlist.RuleSyntax,
}

// managedSyntaxLine starts the header's last line, which quotes the rule grammar; files
// written before the grammar grew quote an older one.
const managedSyntaxLine = "# hand in the config file. Syntax, one rule per line: "

// ManagedPath returns the managed rules file of a config file: the config's name without its
// extension, plus ".allow", in the same directory.
func ManagedPath(configPath string) string {
	dir, base := filepath.Split(configPath)
	if ext := filepath.Ext(base); ext != "" && ext != base {
		base = strings.TrimSuffix(base, ext)
	}
	return dir + base + ".allow"
}

// ErrDuplicateRule is wrapped by Managed.Add's error when the rule is already in the config
// file or the managed file; importers test for it with errors.Is to skip such rules.
var ErrDuplicateRule = errors.New("already in the allow list")

// Managed is the managed rules file as read under the lock, for an EditManaged callback to
// change. It also knows the config file's own rules, so that duplicates are caught on Add.
type Managed struct {
	path    string
	entries []ManagedRule
	conf    []allowlist.Rule // the config file's rules, read-only here

	// now stamps the notes Add writes; nil means time.Now.
	now func() time.Time
}

// ManagedRule is one rule of the managed file with its note: the comment lines directly above
// it, without their "# " prefix.
type ManagedRule struct {
	Rule allowlist.Rule
	Note []string
}

// Path returns the managed file's path.
func (m *Managed) Path() string { return m.path }

// Rules returns the managed rules in file order. Origins are "FILE:LINE" as read; rules added
// in this edit have an empty Origin. Callers must not modify them.
func (m *Managed) Rules() []ManagedRule { return m.entries }

// ConfigRules returns the rules written in the config file itself, which an edit cannot
// change. Callers must not modify them.
func (m *Managed) ConfigRules() []allowlist.Rule { return m.conf }

// Find returns the origin of a rule that says the same thing as r, in the config file or the
// managed file ("" for one added in this edit), and whether there is one.
func (m *Managed) Find(r allowlist.Rule) (origin string, ok bool) {
	key := r.Key()
	for i := range m.conf {
		if m.conf[i].Key() == key {
			return m.conf[i].Origin, true
		}
	}
	for i := range m.entries {
		if m.entries[i].Rule.Key() == key {
			return m.entries[i].Rule.Origin, true
		}
	}
	return "", false
}

// Add appends a rule with a note "added by uid UID at TIME: COMMENT" (uid nil: unknown, left
// out). A rule that says the same thing as one already in either file is an error wrapping
// ErrDuplicateRule and naming where the other is. Ports and sources are put in canonical
// order; whether the ports have proxy listeners is checked when the edit is validated. Errors
// name the rule without a package prefix: callers number them ("rule 2: ...").
func (m *Managed) Add(rule allowlist.Rule, comment string, uid *int) error {
	if rule.Pattern.Base == "" {
		return errors.New("a rule needs a pattern")
	}
	r := allowlist.Rule{
		Pattern: rule.Pattern,
		Ports:   slices.Sorted(slices.Values(rule.Ports)),
		From:    slices.SortedFunc(slices.Values(rule.From), netip.Prefix.Compare),
		To:      rule.To,
	}
	if slices.Contains(r.Ports, 0) {
		return fmt.Errorf("rule %q: port 0: want a number from 1 to 65535", r.String())
	}
	if len(slices.Compact(slices.Clone(r.Ports))) != len(r.Ports) {
		return fmt.Errorf("rule %q: a port given twice", r.String())
	}
	if len(slices.Compact(slices.Clone(r.From))) != len(r.From) {
		return fmt.Errorf("rule %q: a source given twice", r.String())
	}
	if origin, ok := m.Find(r); ok {
		where := "at " + origin
		if origin == "" {
			where = "earlier in this change"
		}
		return fmt.Errorf("rule %q: %w %s", r.String(), ErrDuplicateRule, where)
	}
	now := time.Now
	if m.now != nil {
		now = m.now
	}
	note := "added"
	if uid != nil {
		note += " by uid " + strconv.Itoa(*uid)
	}
	note += " at " + now().UTC().Format(time.RFC3339)
	if c := oneLine(comment); c != "" {
		note += ": " + c
	}
	m.entries = append(m.entries, ManagedRule{Rule: r, Note: []string{note}})
	return nil
}

// oneLine keeps a comment on its comment line: control characters become spaces.
func oneLine(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	return strings.Join(strings.Fields(s), " ")
}

// Remove drops every managed rule with exactly this pattern, whatever its ports, sources and
// destination, and returns how many it dropped. Rules in the config file are not touched; see
// ConfigRules.
func (m *Managed) Remove(pattern allowlist.Pattern) (n int) {
	before := len(m.entries)
	m.entries = slices.DeleteFunc(m.entries, func(e ManagedRule) bool { return e.Rule.Pattern == pattern })
	return before - len(m.entries)
}

// render writes the managed file's text.
func (m *Managed) render() []byte {
	var b bytes.Buffer
	for _, h := range managedHeader {
		b.WriteString(h + "\n")
	}
	for _, e := range m.entries {
		b.WriteByte('\n')
		for _, n := range e.Note {
			b.WriteString("# " + oneLine(n) + "\n")
		}
		b.WriteString(e.Rule.String() + "\n")
	}
	return b.Bytes()
}

// parseManaged reads a managed file. Rules get origins "PATH:LINE"; errors are *ConfigError
// at the managed file's line.
func parseManaged(path string, data []byte) (*Managed, error) {
	m := &Managed{path: path}
	p := &parser{Dispenser: caddyfile.NewDispenser(path, bytes.NewReader(data)), c: Defaults()}
	lines := strings.Split(string(data), "\n")
	for p.Next() {
		line := p.Line()
		if v := p.Val(); v == "{" || v == "}" {
			return nil, p.Errf("unexpected %q: %s holds one rule per line, without blocks (%s)", v, filepath.Base(path), allowlist.RuleSyntax)
		}
		r, err := p.rule()
		if err != nil {
			return nil, err
		}
		m.entries = append(m.entries, ManagedRule{Rule: r, Note: noteAbove(lines, line)})
	}
	return m, nil
}

// noteAbove returns the comment lines directly above line (1-based), header lines left out.
func noteAbove(lines []string, line int) []string {
	var note []string
	for i := line - 2; i >= 0; i-- {
		s := strings.TrimSpace(lines[i])
		if !strings.HasPrefix(s, "#") {
			break
		}
		if slices.Contains(managedHeader, s) || strings.HasPrefix(s, managedSyntaxLine) {
			continue // the header, or an older version of its syntax line
		}
		note = append(note, strings.TrimSpace(strings.TrimPrefix(s, "#")))
	}
	slices.Reverse(note)
	return note
}

// managedRules returns the rules of a managed file as Load adds them to the config.
func (m *Managed) managedRules() []allowlist.Rule {
	out := make([]allowlist.Rule, len(m.entries))
	for i, e := range m.entries {
		out[i] = e.Rule
	}
	return out
}

// readManaged reads the managed file of a config; a missing file is an empty one (data nil).
func readManaged(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, &ConfigError{File: path, Msg: strings.TrimPrefix(err.Error(), "open "+path+": ")}
	}
	return data, nil
}

// readConfigFile reads a config file; its error is a *ConfigError naming the file.
func readConfigFile(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &ConfigError{File: path, Msg: strings.TrimPrefix(err.Error(), "open "+path+": ")}
	}
	return data, nil
}

// LoadManaged reads a config and its managed file as Load does, and returns the managed file
// too, for its rules' notes.
func LoadManaged(configPath string) (*Config, *Managed, error) {
	conf, err := readConfigFile(configPath)
	if err != nil {
		return nil, nil, err
	}
	managed, err := readManaged(ManagedPath(configPath))
	if err != nil {
		return nil, nil, err
	}
	return loadData(configPath, conf, managed)
}

// ReadManaged reads the managed file of configPath as it is now, without the config: a
// missing file is an empty one.
func ReadManaged(configPath string) (*Managed, error) {
	mpath := ManagedPath(configPath)
	data, err := readManaged(mpath)
	if err != nil {
		return nil, err
	}
	return parseManaged(mpath, data)
}

// IsManaged reports whether r was read from the managed file of configPath.
func IsManaged(r *allowlist.Rule, configPath string) bool {
	file, _ := SplitOrigin(r.Origin, "")
	return file == ManagedPath(configPath)
}

// loadData parses and validates a config and its managed file's text (nil: no managed file),
// the one path that Load and EditManaged share. It returns the managed file as read.
func loadData(path string, conf, managed []byte) (*Config, *Managed, error) {
	c, err := Parse(path, bytes.NewReader(conf))
	if err != nil {
		return nil, nil, err
	}
	mpath := ManagedPath(path)
	m := &Managed{path: mpath}
	if managed != nil {
		if m, err = parseManaged(mpath, managed); err != nil {
			return nil, nil, err
		}
	}
	m.conf = c.Rules
	c.Rules = append(slices.Clip(c.Rules), m.managedRules()...)
	if err := c.Validate(); err != nil {
		return nil, nil, err
	}
	return c, m, nil
}

// EditManaged locks the managed file of configPath, reads its rules, lets edit change them,
// validates the whole result (config + managed) as Load does, and writes it atomically. On any
// error, edit's included, the file is unchanged. It returns the new config, ready for
// Runtime.Reload.
func EditManaged(configPath string, edit func(m *Managed) error) (*Config, error) {
	return EditManagedApply(configPath, edit, nil)
}

// EditManagedApply is EditManaged with apply called on the new config after it is written and
// before the lock is released, so that the running box applies edits in the order they were
// written. When apply fails the old file is written back. A nil apply is EditManaged.
func EditManagedApply(configPath string, edit func(m *Managed) error, apply func(*Config) error) (*Config, error) {
	mpath := ManagedPath(configPath)
	unlock, err := lockManaged(mpath)
	if err != nil {
		return nil, IOError{err}
	}
	defer unlock()
	conf, err := readConfigFile(configPath)
	if err != nil {
		return nil, err
	}
	old, err := readManaged(mpath)
	if err != nil {
		return nil, err
	}
	_, m, err := loadData(configPath, conf, old)
	if err != nil {
		return nil, err
	}
	if err := edit(m); err != nil {
		return nil, err
	}
	text := m.render()
	next, _, err := loadData(configPath, conf, text)
	if err != nil {
		return nil, err
	}
	if bytes.Equal(text, old) {
		return next, nil
	}
	if err := atomicfile.Write(mpath, text, 0o644); err != nil {
		return nil, IOError{err}
	}
	if apply != nil {
		if err := apply(next); err != nil {
			if rerr := restore(mpath, old); rerr != nil {
				return nil, IOError{fmt.Errorf("%w; restoring %s also failed: %v", err, mpath, rerr)}
			}
			return nil, err
		}
	}
	return next, nil
}

// IOError marks a failure to lock, read or write the files, as opposed to an edit refused for
// what it says; test for it with errors.As.
type IOError struct{ error }

func (e IOError) Unwrap() error { return e.error }

// restore puts back the managed file as it was before an edit the box could not apply: the
// old text, or no file.
func restore(path string, old []byte) error {
	if old != nil {
		return atomicfile.Write(path, old, 0o644)
	}
	if err := os.Remove(path); err != nil {
		return err
	}
	return atomicfile.SyncDir(filepath.Dir(path))
}

// lockManaged takes an exclusive flock on PATH.lock, waiting for other editors. The lock file
// is never removed: removing it would let two editors lock two different files.
func lockManaged(mpath string) (unlock func(), err error) {
	lp := mpath + ".lock"
	f, err := os.OpenFile(lp, os.O_RDONLY|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("config: lock %s: %w", lp, err)
	}
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("config: lock %s: %w", lp, err)
	}
	return func() { f.Close() }, nil // closing the only descriptor releases the flock
}
