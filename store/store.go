// Package store holds lnm's recent audit records in memory, indexed for linking and for
// queries, and bounded by count and age. It is a go-memdb database: readers (Query, Get)
// work on snapshots and never wait for the writer.
//
// Records reach it off the data path. Add only enqueues (and notes a dns query in the link
// index, so that linking is exact at once); Run's goroutine inserts what is queued in
// batches, one write transaction per batch, which shares the radix trees' path copies among
// the batch (BenchmarkInsert: one transaction per record costs several times as much). The
// durable copy of every record is the audit log; the store only answers quickly about the
// recent past (see Oldest), so under overload it drops what its queue cannot hold and
// counts it (Stats.Dropped) rather than slow down a DNS answer.
//
// go-memdb's immutable radix trees give every node and leaf a channel, so an index entry
// costs about 400 bytes and its insert a few microseconds. A connection is a row with its
// own entries; DNS queries, which come far more often, are held in blocks (see dnsBlock)
// whose entries are per distinct client, name and verdict, as rows without pointers, so
// under load a query costs about 150 bytes and no work for the garbage collector.
// BenchmarkBytesPerRecord measures the memory per record, BenchmarkInsert the writer's
// time; size MaxRecords with them in mind.
package store

import (
	"cmp"
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/hashicorp/go-memdb"

	"github.com/lnm-project/lnm/audit"
	"github.com/lnm-project/lnm/internal/linkindex"
)

// Defaults for Config's zero values.
const (
	DefaultMaxRecords = 1_000_000
	// DefaultMaxBytes leaves most of a 2 GiB industrial PC to the rest of the box.
	DefaultMaxBytes   int64 = 512 << 20
	DefaultMaxAge           = 24 * time.Hour
	DefaultLinkWindow       = 10 * time.Minute
	DefaultEvictEvery       = 10 * time.Second
	DefaultQueue            = 64 << 10
)

// RuntimeOverhead is what a box needs beside its store's records: code, listener buffers,
// the audit writer's queue, goroutine stacks, and the garbage the store's copy-on-write
// index leaves between collections. MemoryLimit adds it to the store's bound.
const RuntimeOverhead int64 = 256 << 20

// MemoryLimit returns the soft memory limit (runtime/debug.SetMemoryLimit) for a process
// whose store is bounded at maxBytes (0: DefaultMaxBytes). Without one, Go's collector lets
// the heap grow to twice what is live, and a full store's box to twice its bound.
func MemoryLimit(maxBytes int64) int64 {
	return cmp.Or(maxBytes, DefaultMaxBytes) + RuntimeOverhead
}

const (
	// evictBatch is how many records one eviction transaction deletes at most, so that a
	// large eviction (after a clock jump, or a lowered bound) never holds the writer lock
	// for long.
	evictBatch = 1024
	// insertBatch is how many queued records one write transaction inserts at most. Larger
	// batches share more path copies but hold memdb's writer lock longer, and past a few
	// thousand modified nodes memdb notifies watchers the slow way.
	insertBatch = 256
	// gather is how long Run lets a batch gather after the first record arrives: at a few
	// records a second a record waits that long to be seen by a new snapshot (readers
	// Flush, so they never miss it); under load batches fill first. At 2 ms, 35,000 queries
	// a second made dns blocks of 70 records; at 10 ms they fill, for 10% less CPU a query.
	gather = 10 * time.Millisecond
)

// Config configures a Store. Every zero value means the documented default.
type Config struct {
	// MaxRecords bounds the records held, all tables together; 0: 1,000,000. An insert
	// evicts the oldest records (1/1024 of the bound, 1 to 64 at once) when the bound is
	// reached, so it is never exceeded.
	MaxRecords int
	// MaxBytes bounds the estimated memory of the records held (Stats.Bytes, within a few
	// percent of the heap they take; see BenchmarkBytesPerRecord); 0: DefaultMaxBytes. Like
	// MaxRecords it is enforced on insert, oldest records first, so whichever bound is
	// reached first decides.
	MaxBytes int64
	// MaxAge is how long a record is held; 0: 24h. The eviction ticker enforces it, so a
	// record may outlive it by up to EvictEvery.
	MaxAge time.Duration
	// LinkWindow is how long before a connection a DNS query may be and still be the one it
	// follows; 0: 10 minutes.
	LinkWindow time.Duration
	// EvictEvery is the period of Run's eviction ticker; 0: 10s.
	EvictEvery time.Duration
	// Queue is how many added records may wait for the writer; 0: 65,536. Add drops a
	// record that finds the queue full and counts it in Stats.Dropped: the audit log has it.
	Queue int
	// Now is the clock for age eviction; nil: time.Now. Record times come from the records.
	Now func() time.Time
}

// Stats describes what a Store holds.
type Stats struct {
	DNS, Conn, Event int // records held per table (Event: config, summary and other kinds)
	// Bytes is an estimate of the memory the records and their index entries take, from a
	// per-record cost measured by BenchmarkBytesPerRecord plus each record's variable parts.
	Bytes   int64
	Queued  int    // records added and not yet inserted
	Evicted uint64 // records evicted since New, by count or by age
	// Dropped counts records the store never held: those that had no seq, and those that
	// found the queue full (the writer could not keep up). The audit log has the latter.
	Dropped uint64
}

// Records is the number of records held.
func (s Stats) Records() int { return s.DNS + s.Conn + s.Event }

// Store holds recent records. Its methods are safe for concurrent use.
type Store struct {
	db         *memdb.MemDB
	schema     *memdb.DBSchema // what the query planner reads
	maxRecords int
	maxBytes   int64
	maxAge     time.Duration
	window     time.Duration
	every      time.Duration
	queueMax   int
	now        func() time.Time
	links      *linkindex.Index

	// The queue. Records move from pending into memdb only under wmu, so whoever holds
	// wmu with pending empty knows every record added before is visible.
	qmu     sync.Mutex
	pending []*audit.Record
	spare   []*audit.Record // the previous batch's array, reused (guarded by wmu)
	// wmu is held by every writer (Flush, Evict), so that a read snapshot taken under it
	// is the state the next write transaction starts from.
	wmu    sync.Mutex
	maxSeq uint64        // the highest seq of a conn or event row inserted (guarded by wmu)
	maxDNS uint64        // the highest seq in the dns table's blocks (guarded by wmu)
	wake   chan struct{} // Add tells Run that a batch has started or is full
	// span is the widest time span of a dns block inserted so far, in nanoseconds: a time
	// range starting at T finds every block holding a record at or after T from T-span on
	// in the time index (which orders blocks by their oldest record). It only grows, and
	// is set before the block is committed.
	span atomic.Int64

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
	case cfg.MaxBytes < 0:
		return nil, fmt.Errorf("store: max bytes %d is negative", cfg.MaxBytes)
	case cfg.MaxAge < 0:
		return nil, fmt.Errorf("store: max age %v is negative", cfg.MaxAge)
	case cfg.LinkWindow < 0:
		return nil, fmt.Errorf("store: link window %v is negative", cfg.LinkWindow)
	case cfg.EvictEvery < 0:
		return nil, fmt.Errorf("store: evict period %v is negative", cfg.EvictEvery)
	case cfg.Queue < 0:
		return nil, fmt.Errorf("store: queue %d is negative", cfg.Queue)
	}
	sch := schema()
	db, err := memdb.NewMemDB(sch)
	if err != nil {
		return nil, fmt.Errorf("store: schema: %w", err)
	}
	s := &Store{
		db:         db,
		schema:     sch,
		maxRecords: cmp.Or(cfg.MaxRecords, DefaultMaxRecords),
		maxBytes:   cmp.Or(cfg.MaxBytes, DefaultMaxBytes),
		maxAge:     cmp.Or(cfg.MaxAge, DefaultMaxAge),
		window:     cmp.Or(cfg.LinkWindow, DefaultLinkWindow),
		every:      cmp.Or(cfg.EvictEvery, DefaultEvictEvery),
		queueMax:   cmp.Or(cfg.Queue, DefaultQueue),
		now:        cfg.Now,
		wake:       make(chan struct{}, 1),
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.links = linkindex.New(s.window)
	return s, nil
}

// Run inserts added records in batches and evicts on the store's own ticker until ctx is
// done; then it inserts what is still queued and returns. Records added afterwards wait
// in the queue until a reader or Flush inserts them.
func (s *Store) Run(ctx context.Context) {
	defer s.Flush()
	tick := time.NewTicker(s.every)
	defer tick.Stop()
	wait := time.NewTimer(gather)
	defer wait.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			s.Evict()
		case <-s.wake:
			if s.queued() < insertBatch {
				wait.Reset(gather)
				select {
				case <-ctx.Done():
					return
				case <-s.wake: // full
				case <-wait.C:
				}
			}
			s.Flush()
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

func (d *delta) addBlock(b *dnsBlock) {
	d.count[tnDNS] += int64(b.n())
	d.bytes += blockBytes(b)
}

func (d *delta) removeBlock(b *dnsBlock) {
	d.count[tnDNS] -= int64(b.n())
	d.bytes -= blockBytes(b)
}

func (d *delta) records() int64 {
	var n int64
	for _, c := range d.count {
		n += c
	}
	return n
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

// surplus is how many of the oldest records must go to keep both bounds, with records and
// bytes about to be added (a write transaction's delta). The bytes bound is turned into a
// count at the average size held, so an eviction pass frees about what is over.
func (s *Store) surplus(records, bytes int64) int64 {
	held := s.held() + records
	over := held - int64(s.maxRecords)
	if b := s.bytes.Load() + bytes; b > s.maxBytes && held > 0 {
		avg := max(b/held, 1)
		over = max(over, (b-s.maxBytes+avg-1)/avg)
	}
	return over
}

func (s *Store) held() int64 {
	var n int64
	for i := range s.count {
		n += s.count[i].Load()
	}
	return n
}

// Add hands a record of any kind to the store without waiting: it notes a dns query (or a
// connection's open) in the link index, so that Link sees it at once, and queues the
// record for Run's writer. r.Seq must be set (by the log) and unique: a record without one
// is dropped and counted in Stats, and a second record with the same seq and kind replaces
// the first. A record that finds the queue full is dropped and counted too.
//
// The store keeps r itself and only reads it, so r may be shared with other readers (the
// audit log's writer), but nobody may modify it, or its slices' elements, afterwards. A
// record whose slices have room beyond their length is copied first, with the slices
// clipped, so that a caller of Query who appends to a result's slice never writes into a
// held array; the data path hands over clipped records and pays for no copy. Taking a
// pointer keeps the data path's stack small: it runs on a goroutine per DNS query, whose
// stack would otherwise grow (and be copied) to hold the records.
func (s *Store) Add(r *audit.Record) {
	if r.Seq == 0 {
		s.dropped.Add(1)
		return
	}
	if cap(r.Answer) > len(r.Answer) || cap(r.ALPN) > len(r.ALPN) || cap(r.Flags) > len(r.Flags) {
		c := *r
		c.Answer, c.ALPN, c.Flags = slices.Clip(c.Answer), slices.Clip(c.ALPN), slices.Clip(c.Flags)
		r = &c
	}
	s.links.Add(r)

	s.qmu.Lock()
	n := len(s.pending)
	if n >= s.queueMax {
		s.qmu.Unlock()
		s.dropped.Add(1)
		return
	}
	s.pending = append(s.pending, r)
	s.qmu.Unlock()
	if n == 0 || n+1 == insertBatch {
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
}

// Insert adds a copy of r and waits until it is visible: Add then Flush. It is for tests
// and tools; the data path uses Add.
func (s *Store) Insert(r audit.Record) {
	s.Add(&r)
	s.Flush()
}

// Flush inserts every queued record, in write transactions of at most insertBatch records,
// and returns when every record added before it was called is visible to readers (or was
// dropped). Run calls it; so do Query, Get and Oldest, so that a reader sees what was
// added before it asked.
//
// It takes the queue once: records added while it inserts wait for the next Flush, so
// that under load Run's batches keep their size rather than shrink to what arrives during
// one insert.
func (s *Store) Flush() {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.qmu.Lock()
	batch := s.pending
	s.pending = s.spare[:0]
	s.qmu.Unlock()
	for rest := batch; len(rest) > 0; {
		n := min(len(rest), insertBatch)
		s.insert(rest[:n])
		rest = rest[n:]
	}
	clear(batch) // let evicted records go
	s.spare = batch[:0]
}

// queued is how many records wait for the writer.
func (s *Store) queued() int {
	s.qmu.Lock()
	defer s.qmu.Unlock()
	return len(s.pending)
}

// insert is one write transaction holding recs, evicting the oldest records if the bound
// is reached. Deleting neighbours in one transaction shares their path copies, so it
// evicts a few at once rather than one per insert. Call it with wmu held.
//
// It never reads memdb through the write transaction before its last insert: a read there
// clones the index and so empties the transaction's cache of nodes already copied, and
// every later insert would copy its whole path again (memdb's readableIndex). A record
// that may replace another (its seq is not above every seq seen) is looked up in a read
// snapshot instead, which no other writer can change while wmu is held.
func (s *Store) insert(recs []*audit.Record) {
	tx := s.db.Txn(true)
	defer tx.Abort()
	var d delta
	var snap *memdb.Txn
	snapshot := func() *memdb.Txn {
		if snap == nil {
			snap = s.db.Txn(false)
		}
		return snap
	}
	nDNS := 0
	for _, r := range recs {
		if tableOf(r.Kind) == tnDNS {
			nDNS++
		}
	}
	// The dns records' array becomes the new block's (insertDNS), so it is sized exactly.
	dns := make([]*audit.Record, 0, nDNS)
	rows := make([]*audit.Record, 0, len(recs)-nDNS) // conn and event rows, a record each
	for _, r := range recs {
		if tableOf(r.Kind) == tnDNS {
			dns = append(dns, r)
		} else {
			rows = append(rows, r)
		}
	}
	for i, r := range rows {
		tn := tableOf(r.Kind)
		if r.Seq <= s.maxSeq {
			if old := replaced(snapshot(), rows[:i], r); old != nil {
				d.remove(tableOf(old.Kind), old)
			}
		}
		s.maxSeq = max(s.maxSeq, r.Seq)
		if err := tx.Insert(tableNames[tn], r); err != nil {
			panic(fmt.Errorf("store: insert seq %d: %w", r.Seq, err)) // a broken schema
		}
		d.add(tn, r)
	}
	if len(dns) > 0 {
		s.insertDNS(tx, snapshot, dns, &d)
	}
	// Evict to keep both bounds: at least a chunk, so a full store does not evict on every
	// insert; again while the bytes bound is still passed (evicted records may be smaller
	// than the average surplus counts with).
	for first := true; ; first = false {
		over := s.surplus(d.records(), d.bytes)
		if over <= 0 {
			break
		}
		if first {
			over = max(over, s.evictChunk())
		}
		if mustTxn(evictTxn(tx, over, time.Time{}, int(over), &d)) == 0 {
			break
		}
	}
	s.apply(&d)
	tx.Commit()
}

// insertDNS adds a batch's dns records (in any order; of two with the same seq the later
// wins) to the dns table in tx. Those above every seq held become one new block. A late
// one, whose seq is not, joins the block whose range holds it, which is replaced, or else
// a new block with the other late records in the same gap between blocks; so blocks never
// overlap. Blocks are looked up in snapshot (see insert).
func (s *Store) insertDNS(tx *memdb.Txn, snapshot func() *memdb.Txn, dns []*audit.Record, d *delta) {
	bySeq := func(a, b *audit.Record) int { return cmp.Compare(a.Seq, b.Seq) }
	if !slices.IsSortedFunc(dns, bySeq) { // they mostly come in order
		slices.SortStableFunc(dns, bySeq)
	}
	uniq := dns[:0]
	for i := range dns {
		if n := len(uniq); n > 0 && uniq[n-1].Seq == dns[i].Seq {
			uniq[n-1] = dns[i]
			continue
		}
		uniq = append(uniq, dns[i])
	}
	dns = uniq
	cut, _ := slices.BinarySearchFunc(dns, s.maxDNS+1, func(r *audit.Record, seq uint64) int {
		return cmp.Compare(r.Seq, seq)
	})
	late, fresh := dns[:cut], dns[cut:]
	if len(fresh) > 0 {
		s.insertBlock(tx, newBlock(slices.Clip(fresh)), d)
		s.maxDNS = fresh[len(fresh)-1].Seq
	}
	if len(late) == 0 {
		return
	}
	// Group the late records by the block at or below their seq (nil: below every block).
	// Records within that block's range merge into it; the others share the gap above it.
	type group struct {
		below *dnsBlock
		into  bool
		recs  []*audit.Record
	}
	var groups []*group
	snap := snapshot()
	for _, r := range late {
		var below *dnsBlock
		if it, err := snap.ReverseLowerBound(tableDNS, indexID, r.Seq); err == nil {
			if obj := it.Next(); obj != nil {
				below = obj.(*dnsBlock)
			}
		}
		into := below != nil && r.Seq <= below.last()
		if n := len(groups); n > 0 && groups[n-1].below == below && groups[n-1].into == into {
			groups[n-1].recs = append(groups[n-1].recs, r)
			continue
		}
		groups = append(groups, &group{below: below, into: into, recs: []*audit.Record{r}})
	}
	for _, g := range groups {
		if !g.into {
			s.insertBlock(tx, newBlock(g.recs), d)
			continue
		}
		nb := g.below.merged(g.recs)
		if err := tx.Delete(tableDNS, g.below); err != nil {
			panic(fmt.Errorf("store: replace block %d: %w", g.below.first(), err))
		}
		d.removeBlock(g.below)
		s.insertBlock(tx, nb, d)
	}
}

// insertBlock inserts a dns block in tx and counts it.
func (s *Store) insertBlock(tx *memdb.Txn, b *dnsBlock, d *delta) {
	if span := int64(b.maxT.Sub(b.minT)); span > s.span.Load() {
		s.span.Store(span) // only writers store, under wmu
	}
	if err := tx.Insert(tableDNS, b); err != nil {
		panic(fmt.Errorf("store: insert block %d: %w", b.first(), err)) // a broken schema
	}
	d.addBlock(b)
}

// replaced returns the record r replaces: the latest of the same seq and table earlier in
// its batch, else the one held in snap.
func replaced(snap *memdb.Txn, earlier []*audit.Record, r *audit.Record) *audit.Record {
	tn := tableOf(r.Kind)
	for i := len(earlier) - 1; i >= 0; i-- {
		if e := earlier[i]; e.Seq == r.Seq && tableOf(e.Kind) == tn {
			return e
		}
	}
	if obj, err := snap.First(tableNames[tn], indexID, r.Seq); err == nil && obj != nil {
		return obj.(*audit.Record)
	}
	return nil
}

// evictChunk is how many records an insert evicts at least when the store is full: 1/256 of
// what it holds, between 1 and 4,096. Eviction has a fixed cost per pass (an iterator per
// table, a dns block rewritten when it is trimmed), so a full store evicts a slice at a time
// rather than a few records on every insert.
func (s *Store) evictChunk() int64 { return min(max(s.held()/256, 1), 4096) }

// mustTxn panics on a transaction error. The store's indexers cannot fail on a record, so an
// error is a broken schema, which every test would hit.
func mustTxn[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// Evict makes one eviction pass, oldest records first across tables: it removes records
// older than MaxAge and, if more than MaxRecords are held, the oldest surplus. It works in
// transactions of at most evictBatch deletions, so writers are never held up for long.
// It also forgets the open connections older than MaxAge that the link index remembers.
func (s *Store) Evict() {
	cutoff := s.now().Add(-s.maxAge)
	s.links.ForgetConns(cutoff)
	for {
		n := s.evictBatch(cutoff)
		if n == 0 || (n < evictBatch && s.surplus(0, 0) <= 0) {
			return
		}
	}
}
func (s *Store) evictBatch(cutoff time.Time) int {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	tx := s.db.Txn(true)
	defer tx.Abort()
	var d delta
	n := mustTxn(evictTxn(tx, s.surplus(0, 0), cutoff, evictBatch, &d))
	s.apply(&d)
	tx.Commit()
	return n
}

// evictTxn deletes records oldest first (by time, then seq, across tables) while fewer than
// over have gone or the oldest is older than cutoff, and at most limit records (a dns block
// is evicted whole or trimmed, so limit may be passed by one block). It returns how many it
// deleted.
//
// The dns table gives up its records block by block, in the order of each block's oldest
// record; within a block, oldest first. A block with records to keep is replaced by one
// holding only them.
func evictTxn(tx *memdb.Txn, over int64, cutoff time.Time, limit int, d *delta) (int, error) {
	// One iterator per table over its time index; an iterator is a snapshot, so deleting
	// what it has already returned does not disturb it.
	var its [numTables]memdb.ResultIterator
	var heads [numTables]any // *audit.Record, or *dnsBlock in the dns table
	for tn, table := range tableNames {
		it, err := tx.Get(table, indexTime)
		if err != nil {
			return 0, err
		}
		its[tn] = it
		heads[tn] = it.Next()
	}
	n := 0
	for n < limit {
		tn := -1
		for i, h := range heads {
			if h != nil && (tn < 0 || olderRow(h, heads[tn])) {
				tn = i
			}
		}
		if tn < 0 {
			break
		}
		at, _ := rowKey(heads[tn])
		if int64(n) >= over && !at.Before(cutoff) {
			break
		}
		switch h := heads[tn].(type) {
		case *audit.Record:
			if err := tx.Delete(tableNames[tn], h); err != nil {
				return n, fmt.Errorf("store: evict seq %d: %w", h.Seq, err)
			}
			d.remove(tn, h)
			d.evicted++
			n++
		case *dnsBlock:
			oldest := h.oldest(int(max(over-int64(n), 0)))
			nb := h.without(func(seq uint64, t time.Time) bool { return t.Before(cutoff) || oldest[seq] })
			if err := tx.Delete(tableDNS, h); err != nil {
				return n, fmt.Errorf("store: evict block %d: %w", h.first(), err)
			}
			d.removeBlock(h)
			gone := h.n()
			if nb != nil {
				if err := tx.Insert(tableDNS, nb); err != nil {
					return n, fmt.Errorf("store: trim block %d: %w", h.first(), err)
				}
				d.addBlock(nb)
				gone -= nb.n()
			}
			d.evicted += uint64(gone)
			n += gone
		}
		heads[tn] = its[tn].Next()
	}
	return n, nil
}

// rowKey is the time and seq a row is ordered by in its time index: a record's own, a dns
// block's oldest time and first seq.
func rowKey(row any) (time.Time, uint64) {
	if b, ok := row.(*dnsBlock); ok {
		return b.minT, b.first()
	}
	r := row.(*audit.Record)
	return r.Time, r.Seq
}

// olderRow orders rows of any table as the time indexes do: by time, then seq.
func olderRow(a, b any) bool {
	at, as := rowKey(a)
	bt, bs := rowKey(b)
	if c := at.Compare(bt); c != 0 {
		return c < 0
	}
	return as < bs
}

// Get returns the record with this seq, after a Flush.
func (s *Store) Get(seq uint64) (audit.Record, bool) {
	s.Flush()
	tx := s.db.Txn(false)
	defer tx.Abort()
	r, err := getTxn(tx, seq)
	if err != nil || r == nil {
		return audit.Record{}, false
	}
	return *r, true
}

func getTxn(tx *memdb.Txn, seq uint64) (*audit.Record, error) {
	// The dns block that may hold seq is the one with the greatest first seq at or below it.
	it, err := tx.ReverseLowerBound(tableDNS, indexID, seq)
	if err != nil {
		return nil, err
	}
	if obj := it.Next(); obj != nil {
		b := obj.(*dnsBlock)
		if i, ok := b.find(seq); ok {
			return b.record(i), nil
		}
	}
	for _, table := range tableNames[tnDNS+1:] {
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
// before it may have been evicted: a caller that needs them reads the audit log. It Flushes
// first.
func (s *Store) Oldest() time.Time {
	s.Flush()
	tx := s.db.Txn(false)
	defer tx.Abort()
	t, _ := oldestTxn(tx)
	return t
}

func oldestTxn(tx *memdb.Txn) (time.Time, error) {
	var oldest any
	for _, table := range tableNames {
		obj, err := tx.First(table, indexTime)
		if err != nil {
			return time.Time{}, err
		}
		if obj != nil && (oldest == nil || olderRow(obj, oldest)) {
			oldest = obj
		}
	}
	if oldest == nil {
		return time.Time{}, nil
	}
	t, _ := rowKey(oldest)
	return t, nil
}

// Stats returns the current counts. It does not Flush: a record still queued counts in
// Queued, not in its table.
func (s *Store) Stats() Stats {
	return Stats{
		Queued:  s.queued(),
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
const entryBytes = 420

// recordBytes estimates the memory a held record takes: the record, its index entries (the
// sparse indexes only count where the record is in them; see the schema files), and what
// varies in size.
func recordBytes(tn int, r *audit.Record) int64 {
	var entries int64 // a dns record's entries are its block's (blockBytes)
	if tn != tnDNS {
		entries = 2 // id, time
	}
	if tn == tnConn {
		if r.Client.IsValid() {
			entries++
		}
		if r.Verdict != "" && r.Verdict != audit.VerdictAllow {
			entries++
		}
		if r.SNI != "" {
			entries++
		}
		if r.HasFlag(audit.FlagUnlinked) {
			entries++
		}
	}
	n := int64(unsafe.Sizeof(*r)) + entries*entryBytes
	n += int64(len(r.Name) + len(r.SNI))
	n += int64(len(r.Answer)) * int64(unsafe.Sizeof(netip.Addr{}))
	for _, a := range r.ALPN {
		n += int64(unsafe.Sizeof(a)) + int64(len(a))
	}
	n += int64(len(r.Flags)) * int64(unsafe.Sizeof(""))
	n += int64(len(r.Reason) + len(r.Change) + len(r.Hash))
	if o := r.Origin; o != nil {
		n += int64(unsafe.Sizeof(*o))
		for _, b := range o.Path {
			n += int64(unsafe.Sizeof(b)) + int64(len(b))
		}
	}
	return n
}
