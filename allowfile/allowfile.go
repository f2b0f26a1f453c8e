// Package allowfile is the managed rules file: the rules that `lnm allow add/remove/import/
// suggest` write, next to the config (/etc/lnm/lnm.conf → /etc/lnm/lnm.allow), so that
// hand-written comments in lnm.conf are never rewritten. It has the syntax of the lines inside
// allow { ... }, one rule per line, with the comment lines directly above a rule kept as its
// note.
//
// This package holds the file's text form, the edits an editor makes to it and the lock that
// serializes editors; package config reads it together with the config file and validates the
// whole (config.EditManaged).
package allowfile

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lnm-project/lnm/allowlist"
)

// header opens every managed file. Reading drops these lines wherever they appear, so they
// never become a rule's note.
var header = []string{
	"# This file is managed by `lnm allow` (add, remove, import, suggest --apply) and rewritten",
	"# on every change; only the comment lines directly above a rule are kept. Write rules by",
	syntaxLine + allowlist.RuleSyntax,
}

// syntaxLine starts the header's last line, which quotes the rule grammar; files written
// before the grammar grew quote an older one.
const syntaxLine = "# hand in the config file. Syntax, one rule per line: "

// Header returns the lines every managed file starts with.
func Header() []string { return slices.Clone(header) }

// PathFor returns the managed rules file of a config file: the config's name without its
// extension, plus ".allow", in the same directory.
func PathFor(configPath string) string {
	dir, base := filepath.Split(configPath)
	if ext := filepath.Ext(base); ext != "" && ext != base {
		base = strings.TrimSuffix(base, ext)
	}
	return dir + base + ".allow"
}

// ErrDuplicateRule is wrapped by File.Add's error when the rule is already in the config
// file or the managed file; importers test for it with errors.Is to skip such rules.
var ErrDuplicateRule = errors.New("already in the allow list")

// File is a managed rules file as read under the lock, for an edit to change. It also knows
// the config file's own rules, so that duplicates are caught on Add. The zero File has no
// path and no rules.
type File struct {
	path    string
	entries []Entry
	conf    []allowlist.Rule // the config file's rules, read-only here

	// Now stamps the notes Add writes; nil means time.Now.
	Now func() time.Time
}

// Entry is one rule of the managed file with its note: the comment lines directly above it,
// without their "# " prefix.
type Entry struct {
	Rule allowlist.Rule
	Note []string
}

// New returns the managed file at path holding entries, beside a config file whose own rules
// are conf.
func New(path string, entries []Entry, conf []allowlist.Rule) *File {
	return &File{path: path, entries: entries, conf: conf}
}

// Path returns the managed file's path.
func (f *File) Path() string { return f.path }

// Rules returns the managed rules in file order. Origins are "FILE:LINE" as read; rules added
// in this edit have an empty Origin. Callers must not modify them.
func (f *File) Rules() []Entry { return f.entries }

// ConfigRules returns the rules written in the config file itself, which an edit cannot
// change. Callers must not modify them.
func (f *File) ConfigRules() []allowlist.Rule { return f.conf }

// AllowRules returns the managed rules alone, as the config adds them after its own.
func (f *File) AllowRules() []allowlist.Rule {
	out := make([]allowlist.Rule, len(f.entries))
	for i, e := range f.entries {
		out[i] = e.Rule
	}
	return out
}

// Find returns the origin of a rule that says the same thing as r, in the config file or the
// managed file ("" for one added in this edit), and whether there is one.
func (f *File) Find(r allowlist.Rule) (origin string, ok bool) {
	key := r.Key()
	for i := range f.conf {
		if f.conf[i].Key() == key {
			return f.conf[i].Origin, true
		}
	}
	for i := range f.entries {
		if f.entries[i].Rule.Key() == key {
			return f.entries[i].Rule.Origin, true
		}
	}
	return "", false
}

// Add appends a rule with a note "added by uid UID at TIME: COMMENT" (uid nil: unknown, left
// out). A rule that says the same thing as one already in either file is an error wrapping
// ErrDuplicateRule and naming where the other is. Ports and sources are put in canonical
// order; whether the ports have proxy listeners is checked when the edit is validated. Errors
// name the rule without a package prefix: callers number them ("rule 2: ...").
func (f *File) Add(rule allowlist.Rule, comment string, uid *int) error {
	if rule.Pattern.Base == "" {
		return errors.New("a rule needs a pattern")
	}
	r := allowlist.Rule{
		Pattern: rule.Pattern,
		Ports:   slices.Sorted(slices.Values(rule.Ports)),
		From:    slices.SortedFunc(slices.Values(rule.From), netip.Prefix.Compare),
		To:      rule.To,
		Private: rule.Private,
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
	if origin, ok := f.Find(r); ok {
		where := "at " + origin
		if origin == "" {
			where = "earlier in this change"
		}
		return fmt.Errorf("rule %q: %w %s", r.String(), ErrDuplicateRule, where)
	}
	now := time.Now
	if f.Now != nil {
		now = f.Now
	}
	note := "added"
	if uid != nil {
		note += " by uid " + strconv.Itoa(*uid)
	}
	note += " at " + now().UTC().Format(time.RFC3339)
	if c := oneLine(comment); c != "" {
		note += ": " + c
	}
	f.entries = append(f.entries, Entry{Rule: r, Note: []string{note}})
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
func (f *File) Remove(pattern allowlist.Pattern) (n int) {
	before := len(f.entries)
	f.entries = slices.DeleteFunc(f.entries, func(e Entry) bool { return e.Rule.Pattern == pattern })
	return before - len(f.entries)
}

// Render returns the managed file's text.
func (f *File) Render() []byte {
	var b bytes.Buffer
	for _, h := range header {
		b.WriteString(h + "\n")
	}
	for _, e := range f.entries {
		b.WriteByte('\n')
		for _, n := range e.Note {
			b.WriteString("# " + oneLine(n) + "\n")
		}
		b.WriteString(e.Rule.String() + "\n")
	}
	return b.Bytes()
}

// NoteAbove returns the comment lines directly above line (1-based) of a managed file's
// lines, header lines left out: the note of the rule on that line.
func NoteAbove(lines []string, line int) []string {
	var note []string
	for i := line - 2; i >= 0; i-- {
		s := strings.TrimSpace(lines[i])
		if !strings.HasPrefix(s, "#") {
			break
		}
		if slices.Contains(header, s) || strings.HasPrefix(s, syntaxLine) {
			continue // the header, or an older version of its syntax line
		}
		note = append(note, strings.TrimSpace(strings.TrimPrefix(s, "#")))
	}
	slices.Reverse(note)
	return note
}

// Lock takes an exclusive flock on PATH.lock for a managed file at path, waiting for other
// editors, and returns the function that releases it. The lock file is never removed:
// removing it would let two editors lock two different files.
func Lock(path string) (unlock func(), err error) {
	lp := path + ".lock"
	f, err := os.OpenFile(lp, os.O_RDONLY|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("allowfile: lock %s: %w", lp, err)
	}
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("allowfile: lock %s: %w", lp, err)
	}
	return func() { f.Close() }, nil // closing the only descriptor releases the flock
}
