// Package atomicfile replaces small files so that a reader, or a crash at any moment, sees
// the old content or the new, never a mix: the managed allow file and the DHCP lease file.
package atomicfile

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// TempPrefix names a writer's temp file next to path. One left behind by a killed writer is
// removed by the next Write, so Write's caller must be the file's only writer (hold its lock).
func TempPrefix(path string) string { return "." + filepath.Base(path) + ".tmp-" }

// Write replaces path with data: a temp file in the same directory, written, fsynced and
// renamed over path, then the directory fsynced. An existing file keeps its mode; a new one
// gets mode.
func Write(path string, data []byte, mode fs.FileMode) error {
	dir := filepath.Dir(path)
	if stale, _ := filepath.Glob(filepath.Join(dir, TempPrefix(path)+"*")); len(stale) > 0 {
		for _, s := range stale {
			os.Remove(s)
		}
	}
	if fi, err := os.Stat(path); err == nil {
		mode = fi.Mode().Perm()
	}
	f, err := os.CreateTemp(dir, TempPrefix(path))
	if err != nil {
		return fmt.Errorf("atomicfile: write %s: %w", path, err)
	}
	tmp := f.Name()
	fail := func(err error) error {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("atomicfile: write %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		return fail(err)
	}
	if err := f.Chmod(mode); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("atomicfile: write %s: %w", path, err)
	}
	if err := SyncDir(dir); err != nil {
		return fmt.Errorf("atomicfile: write %s: %w", path, err)
	}
	return nil
}

// SyncDir makes a rename or removal in dir durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("atomicfile: sync directory: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("atomicfile: sync directory %s: %w", dir, err)
	}
	return nil
}
