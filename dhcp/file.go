package dhcp

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/lnm-project/lnm/internal/atomicfile"
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
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return fmt.Errorf("dhcp: write leases: %w", err)
	}
	if err := atomicfile.Write(path, data, 0o640); err != nil {
		return fmt.Errorf("dhcp: leases: %w", err)
	}
	return nil
}
