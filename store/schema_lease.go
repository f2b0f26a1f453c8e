package store

import (
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/hashicorp/go-memdb"
)

// tableLease holds the DHCP server's leases: which device holds which address. It is not a
// record table (Query, eviction and the counters never read it): the appliance replaces its
// contents whenever the pool changes, and the trail names each record's client from it.
const tableLease = "lease"

// Index names of the lease table; its primary key (indexID) is the address.
const indexMAC = "mac"

// Lease is one row of the lease table, as the DHCP server holds it.
type Lease struct {
	Addr    netip.Addr // IPv4; unique: the pool never gives one address twice
	MAC     string     // "00:1b:1b:aa:bb:07"; a MAC may hold one lease and have declined others
	Device  string     // the host name; empty when the device sent none and has no reservation
	State   string     // offered, bound, released, declined
	Expires time.Time
}

// leaseTableSchema indexes leases by address (the trail's lookup) and by MAC.
func leaseTableSchema() *memdb.TableSchema {
	return &memdb.TableSchema{
		Name: tableLease,
		Indexes: indexes(
			index(indexID, true, false, &leaseIndex[netip.Addr]{
				key:    func(l *Lease) []byte { return appendAddr(make([]byte, 0, addrLen), l.Addr) },
				query:  func(a netip.Addr) []byte { return appendAddr(make([]byte, 0, addrLen), a) },
				layout: "addr16",
			}),
			index(indexMAC, false, false, &leaseIndex[string]{
				key:    func(l *Lease) []byte { return stringKey(l.MAC, addrLen) },
				query:  queryString,
				layout: "mac 0x00 addr16",
			}),
		),
	}
}

// leaseIndex is a memdb.SingleIndexer over *Lease with a typed query argument Q.
type leaseIndex[Q any] struct {
	key    func(l *Lease) []byte
	query  func(q Q) []byte
	layout string
}

func (ix *leaseIndex[Q]) keyLayout() string { return ix.layout }
func (ix *leaseIndex[Q]) seqOrdered() bool  { return false }

// FromObject implements memdb.SingleIndexer.
func (ix *leaseIndex[Q]) FromObject(raw any) (bool, []byte, error) {
	l, ok := raw.(*Lease)
	if !ok {
		return false, nil, fmt.Errorf("store: index object is %T, not *Lease", raw)
	}
	return true, ix.key(l), nil
}

// FromArgs implements memdb.Indexer.
func (ix *leaseIndex[Q]) FromArgs(args ...any) ([]byte, error) { return fromArgs(ix.query, args) }

// SetLeases replaces the lease table with leases, in one transaction. The DHCP server calls
// it with its whole pool after each change; pools are small and changes rare.
func (s *Store) SetLeases(leases []Lease) error {
	tx := s.db.Txn(true)
	defer tx.Abort()
	if _, err := tx.DeleteAll(tableLease, indexID); err != nil {
		return fmt.Errorf("store: leases: %w", err)
	}
	for i := range leases {
		l := leases[i] // a copy: the table owns it, and it is never modified
		if !l.Addr.IsValid() {
			return fmt.Errorf("store: lease without an address")
		}
		l.Addr = l.Addr.Unmap()
		if err := tx.Insert(tableLease, &l); err != nil {
			return fmt.Errorf("store: leases: %w", err)
		}
	}
	tx.Commit()
	return nil
}

// Leases returns every lease, by address.
func (s *Store) Leases() []Lease {
	tx := s.db.Txn(false)
	it, err := tx.Get(tableLease, indexID)
	if err != nil {
		return nil
	}
	var out []Lease
	for raw := it.Next(); raw != nil; raw = it.Next() {
		out = append(out, *raw.(*Lease))
	}
	return out
}

// LeaseByAddr returns the lease of an address.
func (s *Store) LeaseByAddr(a netip.Addr) (Lease, bool) {
	raw, err := s.db.Txn(false).First(tableLease, indexID, a.Unmap())
	if err != nil || raw == nil {
		return Lease{}, false
	}
	return *raw.(*Lease), true
}

// LeasesByMAC returns the leases a MAC holds or declined, by address.
func (s *Store) LeasesByMAC(mac string) []Lease {
	it, err := s.db.Txn(false).Get(tableLease, indexMAC, mac)
	if err != nil {
		return nil
	}
	var out []Lease
	for raw := it.Next(); raw != nil; raw = it.Next() {
		out = append(out, *raw.(*Lease))
	}
	slices.SortFunc(out, func(a, b Lease) int { return a.Addr.Compare(b.Addr) })
	return out
}
