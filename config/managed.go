package config

// The managed rules file is read here with the config file and validated as a whole; its
// text form, edits and lock are package allowfile's.
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
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/coredns/caddy/caddyfile"

	"github.com/lnm-project/lnm/allowfile"
	"github.com/lnm-project/lnm/allowlist"
	"github.com/lnm-project/lnm/internal/atomicfile"
)

// parseManaged reads a managed file's rules with their notes. Rules get origins "PATH:LINE";
// errors are *ConfigError at the managed file's line.
func parseManaged(path string, data []byte) ([]allowfile.Entry, error) {
	var entries []allowfile.Entry
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
		entries = append(entries, allowfile.Entry{Rule: r, Note: allowfile.NoteAbove(lines, line)})
	}
	return entries, nil
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
func LoadManaged(configPath string) (*Config, *allowfile.File, error) {
	conf, err := readConfigFile(configPath)
	if err != nil {
		return nil, nil, err
	}
	managed, err := readManaged(allowfile.PathFor(configPath))
	if err != nil {
		return nil, nil, err
	}
	return loadData(configPath, conf, managed)
}

// ReadManaged reads the managed file of configPath as it is now, without the config: a
// missing file is an empty one.
func ReadManaged(configPath string) (*allowfile.File, error) {
	mpath := allowfile.PathFor(configPath)
	data, err := readManaged(mpath)
	if err != nil {
		return nil, err
	}
	entries, err := parseManaged(mpath, data)
	if err != nil {
		return nil, err
	}
	return allowfile.New(mpath, entries, nil), nil
}

// IsManaged reports whether r was read from the managed file of configPath.
func IsManaged(r *allowlist.Rule, configPath string) bool {
	file, _ := SplitOrigin(r.Origin, "")
	return file == allowfile.PathFor(configPath)
}

// loadData parses and validates a config and its managed file's text (nil: no managed file),
// the one path that Load and EditManaged share. It returns the managed file as read.
func loadData(path string, conf, managed []byte) (*Config, *allowfile.File, error) {
	c, err := Parse(path, bytes.NewReader(conf))
	if err != nil {
		return nil, nil, err
	}
	mpath := allowfile.PathFor(path)
	entries, err := parseManaged(mpath, managed)
	if err != nil {
		return nil, nil, err
	}
	m := allowfile.New(mpath, entries, c.Rules)
	c.Rules = append(slices.Clip(c.Rules), m.AllowRules()...)
	if err := c.Validate(); err != nil {
		return nil, nil, err
	}
	return c, m, nil
}

// EditManaged locks the managed file of configPath, reads its rules, lets edit change them,
// validates the whole result (config + managed) as Load does, and writes it atomically. On any
// error, edit's included, the file is unchanged. It returns the new config, ready for
// Runtime.Reload.
func EditManaged(configPath string, edit func(m *allowfile.File) error) (*Config, error) {
	return EditManagedApply(configPath, edit, nil)
}

// EditManagedApply is EditManaged with apply called on the new config after it is written and
// before the lock is released, so that the running box applies edits in the order they were
// written. When apply fails the old file is written back. A nil apply is EditManaged.
func EditManagedApply(configPath string, edit func(m *allowfile.File) error, apply func(*Config) error) (*Config, error) {
	mpath := allowfile.PathFor(configPath)
	unlock, err := allowfile.Lock(mpath)
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
	text := m.Render()
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
