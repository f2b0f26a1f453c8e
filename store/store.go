// Package store holds lnm's recent audit records in memory, indexed for linking and for
// queries, and bounded by count and age. It is a go-memdb database: readers (Link, Query)
// work on snapshots and never wait; a writer holds memdb's one write lock for a transaction
// of one record and does no I/O. The durable copy of every record is the audit log; the
// store only answers quickly about the recent past (see Oldest).
//
// go-memdb's immutable radix trees copy the path of every insert and give every node a
// channel, so a held record costs about 2.8 KB and an Insert about 0.1 ms with a million held
// (BenchmarkBytesPerRecord, BenchmarkInsert); size MaxRecords with that in mind.
package store

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/hashicorp/go-memdb"

	"github.com/lnm-project/lnm/audit"
)

// Defaults for Config's zero values.
const (
	DefaultMaxRecords = 1_000_000
	DefaultMaxAge     = 24 * time.Hour
	DefaultLinkWindow = 10 * time.Minute
	DefaultEvictEvery = 10 * time.Second
)

// evictBatch is how many records one eviction transaction deletes at most, so that a large
// eviction (after a clock jump, or a lowered bound) never holds the writer lock for long.
const evictBatch = 1024

// Config configures a Store. Every zero value means the documented default.
type Config struct {
	// MaxRecords bounds the records held, all tables together; 0: 1,000,000. Insert evicts
	// the oldest records (1/1024 of the bound, 1 to 64 at once) when the bound is reached,
	// so it is never exceeded.
	MaxRecords int
	// MaxAge is how long a record is held; 0: 24h. The eviction ticker enforces it, so a
	// record may outlive it by up to EvictEvery.
	MaxAge time.Duration
	// LinkWindow is how long before a connection a DNS query may be and still be the one it
	// follows; 0: 10 minutes.
	LinkWindow time.Duration
	// EvictEvery is the period of Run's eviction ticker; 0: 10s.
	EvictEvery time.Duration
	// Now is the clock for age eviction; nil: time.Now. Record times come from the records.
	Now func() time.Time
}

// Stats describes what a Store holds.
type Stats struct {
	DNS, Conn, Event int // records held per table (Event: config, summary and other kinds)
	// Bytes is an estimate of the memory the records and their index entries take, from a
	// per-record cost measured by BenchmarkBytesPerRecord plus each record's variable parts.
	Bytes   int64
	Evicted uint64 // records evicted since New, by count or by age
	Dropped uint64 // records Insert refused because they had no seq
}

// Records is the number of records held.
func (s Stats) Records() int { return s.DNS + s.Conn + s.Event }

// Store holds recent records. Its methods are safe for concurrent use.
type Store struct {
	db         *memdb.MemDB
	schema     *memdb.DBSchema // what the query planner reads
	maxRecords int
	maxAge     time.Duration
	window     time.Duration
	every      time.Duration
	now        func() time.Time

	// Counters change only inside write transactions, just before Commit, so writers see
	// them exact; readers (Stats) read them without a lock.
	count   [numTables]atomic.Int64
	bytes   atomic.Int64
	evicted atomic.Uint64
	dropped atomic.Uint64
}

// New checks the config and builds an empty Store.
func New(cfg Config) (*Store, error) {
	switch {
	case cfg.MaxRecords < 0:
		return nil, fmt.Errorf("store: max records %d is negative", cfg.MaxRecords)
	case cfg.MaxAge < 0:
		return nil, fmt.Errorf("store: max age %v is negative", cfg.MaxAge)
	case cfg.LinkWindow < 0:
		return nil, fmt.Errorf("store: link window %v is negative", cfg.LinkWindow)
	case cfg.EvictEvery < 0:
		return nil, fmt.Errorf("store: evict period %v is negative", cfg.EvictEvery)
	}
	sch := schema()
	db, err := memdb.NewMemDB(sch)
	if err != nil {
		return nil, fmt.Errorf("store: schema: %w", err)
	}
	s := &Store{
		db:         db,
		schema:     sch,
		maxRecords: cmp(cfg.MaxRecords, DefaultMaxRecords),
		maxAge:     cmp(cfg.MaxAge, DefaultMaxAge),
		window:     cmp(cfg.LinkWindow, DefaultLinkWindow),
		every:      cmp(cfg.EvictEvery, DefaultEvictEvery),
		now:        cfg.Now,
	}
	if s.now == nil {
		s.now = time.Now
	}
	return s, nil
}

// cmp returns v, or def when v is zero.
func cmp[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// Run evicts on the store's own ticker until ctx is done.
func (s *Store) Run(ctx context.Context) {
	t := time.NewTicker(s.every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.Evict()
		}
	}
}

// Table numbers, for the counters.
const (
	tnDNS = iota
	tnConn
	tnEvent
	numTables
)

var tableNames = [numTables]string{tnDNS: tableDNS, tnConn: tableConn, tnEvent: tableEvent}

// tableOf is the table a record of this kind lives in.
func tableOf(k audit.Kind) int {
	switch k {
	case audit.KindDNS:
		return tnDNS
	case audit.KindConn:
		return tnConn
	}
	return tnEvent
}

// delta collects a write transaction's effect on the counters.
type delta struct {
	count   [numTables]int64
	bytes   int64
	evicted uint64
}

func (d *delta) add(tn int, r *audit.Record) {
	d.count[tn]++
	d.bytes += recordBytes(tn, r)
}

func (d *delta) remove(tn int, r *audit.Record) {
	d.count[tn]--
	d.bytes -= recordBytes(tn, r)
}

// apply publishes d. Call it inside the write transaction, before Commit.
func (s *Store) apply(d *delta) {
	for tn, n := range d.count {
		if n != 0 {
			s.count[tn].Add(n)
		}
	}
	s.bytes.Add(d.bytes)
	if d.evicted != 0 {
		s.evicted.Add(d.evicted)
	}
}

func (s *Store) held() int64 {
	var n int64
	for i := range s.count {
		n += s.count[i].Load()
	}
	return n
}

// Insert holds a record of any kind. r.Seq must be set (by the log) and unique: a record
// without one is dropped and counted in Stats, and a second record with the same seq and
// kind replaces the first. The store keeps r's slices; the caller must not modify them
// afterwards. Insert is one small write transaction and does no I/O.
func (s *Store) Insert(r audit.Record) {
	if r.Seq == 0 {
		s.dropped.Add(1)
		return
	}
	// Held records are never modified. Clipping the slices makes an append by anyone who
	// got the record from Query copy instead of writing into the held array.
	r.Answer = slices.Clip(r.Answer)
	r.ALPN = slices.Clip(r.ALPN)
	r.Flags = slices.Clip(r.Flags)
	rec := &r

	tx := s.db.Txn(true)
	defer tx.Abort()
	var d delta
	mustTxn(insertTxn(tx, rec, &d))
	if over := s.held() + d.count[tableOf(r.Kind)] - int64(s.maxRecords); over > 0 {
		// Deleting neighbours in one transaction shares their path copies, so evict a
		// few at once rather than one per insert.
		over = max(over, s.evictChunk())
		mustTxn(evictTxn(tx, over, time.Time{}, int(over), &d))
	}
	s.apply(&d)
	tx.Commit()
}

// mustTxn panics on a transaction error. The store's indexers cannot fail on a record, so an
// error is a broken schema, which every test would hit.
// evictChunk is how many records Insert evicts when the store is full: 1/1024 of the bound,
// between 1 and 64.
func (s *Store) evictChunk() int64 { return int64(min(max(s.maxRecords/1024, 1), 64)) }

func mustTxn[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func insertTxn(tx *memdb.Txn, r *audit.Record, d *delta) (struct{}, error) {
	tn := tableOf(r.Kind)
	table := tableNames[tn]
	old, err := tx.First(table, indexID, r.Seq)
	if err != nil {
		return struct{}{}, err
	}
	if old != nil {
		d.remove(tn, old.(*audit.Record))
	}
	if err := tx.Insert(table, r); err != nil {
		return struct{}{}, fmt.Errorf("store: insert seq %d: %w", r.Seq, err)
	}
	d.add(tn, r)
	return struct{}{}, nil
}

// Evict makes one eviction pass, oldest records first across tables: it removes records
// older than MaxAge and, if more than MaxRecords are held, the oldest surplus. It works in
// transactions of at most evictBatch deletions, so writers are never held up for long.
func (s *Store) Evict() {
	cutoff := s.now().Add(-s.maxAge)
	for {
		if n := s.evictBatch(cutoff); n < evictBatch {
			return
		}
	}
}

func (s *Store) evictBatch(cutoff time.Time) int {
	tx := s.db.Txn(true)
	defer tx.Abort()
	var d delta
	n := mustTxn(evictTxn(tx, s.held()-int64(s.maxRecords), cutoff, evictBatch, &d))
	s.apply(&d)
	tx.Commit()
	return n
}

// evictTxn deletes records oldest first (by time, then seq, across tables) while fewer than
// over have gone or the oldest is older than cutoff, and at most limit records. It returns
// how many it deleted.
func evictTxn(tx *memdb.Txn, over int64, cutoff time.Time, limit int, d *delta) (int, error) {
	// One iterator per table over its time index; an iterator is a snapshot, so deleting
	// what it has already returned does not disturb it.
	var its [numTables]memdb.ResultIterator
	var heads [numTables]*audit.Record
	for tn, table := range tableNames {
		it, err := tx.Get(table, indexTime)
		if err != nil {
			return 0, err
		}
		its[tn] = it
		heads[tn] = next(it)
	}
	n := 0
	for n < limit {
		tn := -1
		for i, h := range heads {
			if h != nil && (tn < 0 || older(h, heads[tn])) {
				tn = i
			}
		}
		if tn < 0 {
			break
		}
		r := heads[tn]
		if int64(n) >= over && !r.Time.Before(cutoff) {
			break
		}
		if err := tx.Delete(tableNames[tn], r); err != nil {
			return n, fmt.Errorf("store: evict seq %d: %w", r.Seq, err)
		}
		d.remove(tn, r)
		d.evicted++
		n++
		heads[tn] = next(its[tn])
	}
	return n, nil
}

// older orders records as the time index does: by time, then seq.
func older(a, b *audit.Record) bool {
	if c := a.Time.Compare(b.Time); c != 0 {
		return c < 0
	}
	return a.Seq < b.Seq
}

// next returns the iterator's next record, or nil at the end.
func next(it memdb.ResultIterator) *audit.Record {
	if obj := it.Next(); obj != nil {
		return obj.(*audit.Record)
	}
	return nil
}

// Get returns the record with this seq.
func (s *Store) Get(seq uint64) (audit.Record, bool) {
	tx := s.db.Txn(false)
	defer tx.Abort()
	r, err := getTxn(tx, seq)
	if err != nil || r == nil {
		return audit.Record{}, false
	}
	return *r, true
}

func getTxn(tx *memdb.Txn, seq uint64) (*audit.Record, error) {
	for _, table := range tableNames {
		obj, err := tx.First(table, indexID, seq)
		if err != nil {
			return nil, err
		}
		if obj != nil {
			return obj.(*audit.Record), nil
		}
	}
	return nil, nil
}

// Oldest returns the time of the oldest record held, zero when the store is empty. Records
// before it may have been evicted: a caller that needs them reads the audit log.
func (s *Store) Oldest() time.Time {
	tx := s.db.Txn(false)
	defer tx.Abort()
	t, _ := oldestTxn(tx)
	return t
}

func oldestTxn(tx *memdb.Txn) (time.Time, error) {
	var oldest *audit.Record
	for _, table := range tableNames {
		obj, err := tx.First(table, indexTime)
		if err != nil {
			return time.Time{}, err
		}
		if obj != nil && (oldest == nil || older(obj.(*audit.Record), oldest)) {
			oldest = obj.(*audit.Record)
		}
	}
	if oldest == nil {
		return time.Time{}, nil
	}
	return oldest.Time, nil
}

// Stats returns the current counts.
func (s *Store) Stats() Stats {
	return Stats{
		DNS:     int(s.count[tnDNS].Load()),
		Conn:    int(s.count[tnConn].Load()),
		Event:   int(s.count[tnEvent].Load()),
		Bytes:   s.bytes.Load(),
		Evicted: s.evicted.Load(),
		Dropped: s.dropped.Load(),
	}
}

// entryBytes is the memory one index entry costs: a radix leaf node and leaf, each with its
// mutation channel, the key twice (the leaf's copy and the node's prefix) and a share of the
// inner nodes. It is calibrated with BenchmarkBytesPerRecord, which measures the real figure.
const entryBytes = 440

// recordBytes estimates the memory a held record takes: the record, its index entries (the
// sparse indexes only count where the record is in them), and what varies in size.
func recordBytes(tn int, r *audit.Record) int64 {
	name := recordName(r)
	entries := int64(2) // id, time
	if r.Client.IsValid() {
		entries++
		if tn == tnDNS && name != "" {
			entries++ // client_name
		}
	}
	if name != "" {
		entries++
	}
	if r.Verdict != "" && r.Verdict != audit.VerdictAllow {
		entries++
	}
	if r.HasFlag(audit.FlagUnlinked) {
		entries++
	}
	if tn == tnConn && r.ID != 0 {
		entries++
	}
	n := int64(unsafe.Sizeof(*r)) + entries*entryBytes
	n += int64(len(r.Name) + len(r.SNI) + len(name)) // held, and copied into the name key
	if tn == tnDNS {
		n += int64(len(name)) // and into the client_name key
	}
	n += int64(len(r.Answer)) * int64(unsafe.Sizeof(netip.Addr{}))
	for _, a := range r.ALPN {
		n += int64(unsafe.Sizeof(a)) + int64(len(a))
	}
	n += int64(len(r.Flags)) * int64(unsafe.Sizeof(""))
	n += int64(len(r.Reason) + len(r.Change) + len(r.Hash))
	return n
}
