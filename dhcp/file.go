package dhcp

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// DefaultLeaseFile is where leases are kept when the config names no file: beside the audit
// log, on the state partition that upgrades keep.
const DefaultLeaseFile = "/var/lib/lnm/leases.json"

// leaseFileVersion is the lease file's format; a reader refuses a newer one rather than
// drop what it does not understand.
const leaseFileVersion = 1

// leaseFile is the lease file's JSON form.
type leaseFile struct {
	Version int     `json:"version"`
	Leases  []Lease `json:"leases"`
}

// ReadLeases reads the lease file. A missing file is an empty pool (the first start).
func ReadLeases(path string) ([]Lease, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("dhcp: read leases: %w", err)
	}
	var f leaseFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("dhcp: read leases %s: %w", path, err)
	}
	if f.Version != leaseFileVersion {
		return nil, fmt.Errorf("dhcp: read leases %s: version %d, this lnm reads version %d", path, f.Version, leaseFileVersion)
	}
	for _, l := range f.Leases {
		if !l.Addr.Is4() {
			return nil, fmt.Errorf("dhcp: read leases %s: lease without an IPv4 address", path)
		}
	}
	return f.Leases, nil
}

// WriteLeases replaces the lease file atomically: a temporary file in the same directory,
// fsynced, renamed over the old one, and the directory fsynced, so that a crash leaves
// either the old file or the new one, never a mix. The directory is made (0750) if needed.
func WriteLeases(path string, leases []Lease) error {
	if leases == nil {
		leases = []Lease{}
	}
	data, err := json.MarshalIndent(leaseFile{Version: leaseFileVersion, Leases: leases}, "", "  ")
	if err != nil {
		return fmt.Errorf("dhcp: write leases: %w", err)
	}
	data = append(data, '\n')
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("dhcp: write leases: %w", err)
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("dhcp: write leases: %w", err)
	}
	tmp := f.Name()
	fail := func(err error) error {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("dhcp: write leases %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		return fail(err)
	}
	if err := f.Chmod(0o640); err != nil {
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
		return fmt.Errorf("dhcp: write leases %s: %w", path, err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("dhcp: write leases %s: %w", path, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("dhcp: write leases %s: %w", path, err)
	}
	return nil
}
