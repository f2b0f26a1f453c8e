package audit

import (
	"errors"
	"fmt"
	"io"
	"os"
	"time"
)

// maxBatch bounds how many records the writer takes from the queue before writing them.
const maxBatch = 4096

// writeLinger is how long the writer waits for more records when only a few are pending.
const writeLinger = 2 * time.Millisecond

// housekeepEvery is how often retention runs besides after each rotation.
const housekeepEvery = time.Minute

// writer is the state of the writer goroutine. Nothing else touches it after Open returns.
//
// Records move queue → pending → file → fsynced. pending holds every record the writer took
// and has not yet seen fsynced, in seq order; the first written of them are in the file between
// the offsets synced and size. After any failed write or fsync the file is suspect beyond
// synced (a partial line; pages the kernel dropped after a failed fsync), so the next attempt
// truncates it back to synced and writes all of pending again. That makes every retry
// idempotent and keeps a failed batch until it is durable.
type writer struct {
	l    *Log
	lock *os.File // the directory, flocked

	f           segFile // the active segment; nil between sealing one and creating the next
	active      segment // minT and maxT over the records written to it
	sealPending bool    // active closed but not yet renamed to its sealed name
	dirDirty    bool    // a create or rename not yet made durable by fsyncing the directory
	size        int64   // bytes of complete lines in f
	synced      int64   // bytes of f known to be on disk
	broken      bool    // f beyond synced is suspect: truncate before writing
	sealed      []segment

	pending   []*Record
	written   int    // pending[:written] are in the file
	lastSeq   uint64 // seq of the last record written (or found at Open)
	accepted  uint64 // seq of the last record taken into pending
	published uint64 // seq of the last record handed to followers
	urgent    bool   // a record written since the last fsync wants an fsync now
	buf       []byte

	// An fsync of the group-commit schedule (the timer, urgent records) runs on a goroutine
	// of its own, so that the writer keeps writing, and Flush keeps returning, meanwhile.
	// syncing is true while one runs; its result arrives on syncDone.
	syncing  bool
	syncDone chan syncResult

	failing    error
	failedAt   time.Time
	syncTimer  *time.Timer
	timerArmed bool
	retryTimer *time.Timer
	closeErr   error
}

// syncResult is the outcome of an fsync run by syncAsync: the file was size bytes long, and
// pending[:upto] were written, when it began.
type syncResult struct {
	err  error
	size int64
	upto int
	took time.Duration
}

// open scans the directory, repairs the last segment and opens it for append.
func (w *writer) open() error {
	l := w.l
	segs, err := listSegments(l.cfg.Dir)
	if err != nil {
		return err
	}
	// Only the last segment can be active; an earlier one left unsealed (a rename lost in a
	// crash) is scanned and sealed now.
	for i := range segs {
		s := &segs[i]
		if i == len(segs)-1 {
			break
		}
		if !s.sealed {
			res, err := scanFile(l.path(s.name))
			if err != nil {
				return err
			}
			if res.records == 0 {
				if err := os.Remove(l.path(s.name)); err != nil {
					return fmt.Errorf("audit: %w", err)
				}
				continue
			}
			name := sealedName(s.first, res.minT, res.maxT)
			if err := os.Rename(l.path(s.name), l.path(name)); err != nil {
				return fmt.Errorf("audit: %w", err)
			}
			l.log.Warn("sealed a segment left active", "segment", name)
			s.name, s.sealed, s.minT, s.maxT = name, true, res.minT, res.maxT
			w.dirDirty = true
		}
		w.sealed = append(w.sealed, *s)
	}
	if len(segs) == 0 {
		return w.ensureActive()
	}
	last := segs[len(segs)-1]
	if last.sealed {
		res, err := scanFile(l.path(last.name))
		if err != nil {
			return err
		}
		w.lastSeq = max(res.lastSeq, last.first-1)
		w.sealed = append(w.sealed, last)
		if err := w.ensureActive(); err != nil {
			return err
		}
		w.retain(time.Now())
		return nil
	}
	f, err := os.OpenFile(l.path(last.name), os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	res, err := scanSegment(f)
	if err != nil {
		f.Close()
		return fmt.Errorf("audit: scan %s: %w", last.name, err)
	}
	if res.good < last.size {
		tail := make([]byte, min(last.size-res.good, 200))
		n, _ := f.ReadAt(tail, res.good)
		if err := f.Truncate(res.good); err != nil {
			f.Close()
			return fmt.Errorf("audit: cut torn tail: %w", err)
		}
		if err := f.Sync(); err != nil {
			f.Close()
			return fmt.Errorf("audit: cut torn tail: %w", err)
		}
		l.log.Warn("cut a torn tail off the last segment", "segment", last.name,
			"offset", res.good, "bytes", last.size-res.good, "start", string(tail[:n]))
	}
	if res.bad > 0 {
		l.log.Warn("unparsable lines in the last segment", "segment", last.name, "lines", res.bad)
	}
	f.Close()
	w.lastSeq = max(res.lastSeq, last.first-1)
	if w.f, err = l.cfg.openFile(l.path(last.name), os.O_WRONLY|os.O_APPEND, 0); err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	w.active = segment{name: last.name, first: last.first, minT: res.minT, maxT: res.maxT}
	w.size, w.synced = res.good, res.good
	if err := w.ensureActive(); err != nil {
		w.f.Close()
		return err
	}
	w.retain(time.Now())
	return nil
}

func scanFile(path string) (scanResult, error) {
	f, err := os.Open(path)
	if err != nil {
		return scanResult{}, fmt.Errorf("audit: %w", err)
	}
	defer f.Close()
	res, err := scanSegment(f)
	if err != nil {
		return res, fmt.Errorf("audit: scan %s: %w", path, err)
	}
	return res, nil
}

// run is the writer goroutine.
func (w *writer) run() {
	l := w.l
	defer close(l.done)
	w.syncTimer = time.NewTimer(time.Hour)
	w.syncTimer.Stop()
	w.retryTimer = time.NewTimer(time.Hour)
	w.retryTimer.Stop()
	house := time.NewTicker(housekeepEvery)
	defer house.Stop()
	linger := time.NewTimer(time.Hour)
	linger.Stop()
	w.syncDone = make(chan syncResult, 1)
	for {
		queue := l.queue
		if w.failing != nil {
			queue = nil // keep what we have; Append refuses meanwhile
		}
		select {
		case r := <-queue:
			w.take(r)
			w.drain()
			// A trickle of records would cost one write(2) each. Waiting a moment for more
			// changes nothing a client can see (records become durable at the next fsync,
			// SyncEvery away) unless one of them asks to be synced at once.
			// A Flush cuts the wait short: someone is holding answers until this is written.
			if len(w.pending)-w.written < maxBatch/16 && !w.l.cfg.SyncAlways && !w.wantsUrgent() {
				linger.Reset(writeLinger)
				select {
				case <-l.flushReq:
				case <-linger.C:
				}
				linger.Stop()
				w.drain()
			}
			w.step()
		case <-l.flushReq:
			if w.failing == nil {
				w.drain()
				w.step()
			}
		case reply := <-l.syncReq:
			reply <- w.syncAll()
		case <-w.syncTimer.C:
			w.timerArmed = false
			w.syncAsync()
		case res := <-w.syncDone:
			w.finishSync(res, true)
		case <-w.retryTimer.C:
			w.retry()
		case now := <-house.C:
			w.housekeep(now)
		case <-l.closing:
			w.shutdown()
			return
		}
	}
}

// drain takes what is queued, until maxBatch records wait to be written.
func (w *writer) drain() {
	for len(w.pending)-w.written < maxBatch {
		select {
		case r := <-w.l.queue:
			w.take(r)
		default:
			return
		}
	}
}

// wantsUrgent reports whether a record not yet written asks for an fsync at once. (The
// written ones set w.urgent when they were written.)
func (w *writer) wantsUrgent() bool {
	for _, r := range w.pending[w.written:] {
		if w.l.cfg.Urgent(r) {
			return true
		}
	}
	return false
}

func (w *writer) take(r *Record) {
	w.pending = append(w.pending, r)
	w.accepted = r.Seq
}

// step writes what was taken and fsyncs if the policy asks for it now.
func (w *writer) step() {
	if w.l.hasRefusedFull.Load() {
		w.summarize(false)
	}
	if err := w.writePending(); err != nil {
		w.fail(err)
		return
	}
	if w.l.cfg.SyncAlways {
		if err := w.sync(); err != nil {
			w.fail(err)
			return
		}
	} else if w.urgent {
		w.syncAsync()
	} else if w.size > w.synced && !w.timerArmed {
		w.syncTimer.Reset(w.l.cfg.SyncEvery)
		w.timerArmed = true
	}
}

// syncAll serves Sync: everything appended so far, written and fsynced.
func (w *writer) syncAll() error {
	l := w.l
	l.mu.Lock()
	target, err := l.next-1, l.err
	l.mu.Unlock()
	if err != nil {
		return err
	}
	// Every seq up to target is in pending or waiting in the queue, in order.
	for w.accepted < target {
		w.take(<-l.queue)
	}
	if l.hasRefusedFull.Load() {
		w.summarize(false)
	}
	if err := w.writePending(); err != nil {
		w.fail(err)
		return w.l.Healthy()
	}
	if err := w.sync(); err != nil {
		w.fail(err)
		return w.l.Healthy()
	}
	return nil
}

// writePending writes the records not yet in the file, rotating on the way.
func (w *writer) writePending() error {
	if w.broken {
		if err := w.repair(); err != nil {
			return err
		}
	}
	if err := w.ensureActive(); err != nil {
		return err
	}
	limit := w.l.cfg.SegmentSize
	w.buf = w.buf[:0]
	start := w.written
	for i := w.written; i < len(w.pending); i++ {
		n := len(w.buf)
		w.buf = append(w.pending[i].AppendJSON(w.buf), '\n')
		if w.size+int64(len(w.buf)) <= limit || (w.size == 0 && n == 0) {
			continue
		}
		// pending[i] does not fit: finish this segment without it and start the next.
		w.buf = w.buf[:n]
		if err := w.writeBuf(start, i); err != nil {
			return err
		}
		if err := w.rotate(); err != nil {
			return err
		}
		w.buf = append(w.pending[w.written].AppendJSON(w.buf[:0]), '\n')
		start = w.written
		i = w.written
	}
	return w.writeBuf(start, len(w.pending))
}

// writeBuf writes w.buf, the encoding of pending[from:to].
func (w *writer) writeBuf(from, to int) error {
	if len(w.buf) == 0 {
		return nil
	}
	n, err := w.f.Write(w.buf)
	w.l.stats.bytes.Add(uint64(n))
	w.l.stats.writes.Add(1)
	if err != nil {
		w.broken = true
		return err
	}
	w.size += int64(n)
	w.written = to
	recs := w.pending[from:to]
	for _, r := range recs {
		t := r.Time.Truncate(time.Millisecond)
		if w.active.minT.IsZero() || t.Before(w.active.minT) {
			w.active.minT = t
		}
		if t.After(w.active.maxT) {
			w.active.maxT = t
		}
		if !w.urgent && w.l.cfg.Urgent(r) {
			w.urgent = true
		}
	}
	w.lastSeq = recs[len(recs)-1].Seq
	w.buf = w.buf[:0]
	// Followers and the counter see each record once, however often a retry rewrites it.
	i := 0
	for i < len(recs) && recs[i].Seq <= w.published {
		i++
	}
	if fresh := recs[i:]; len(fresh) > 0 {
		w.published = fresh[len(fresh)-1].Seq
		w.l.stats.records.Add(uint64(len(fresh)))
		w.l.publish(fresh)
	}
	w.l.advance(w.lastSeq)
	return nil
}

// syncAsync starts an fsync of what is written so far on a goroutine of its own, unless
// one runs already (finishSync starts the next when more is due).
func (w *writer) syncAsync() {
	if w.syncing || w.failing != nil {
		return
	}
	if w.f == nil || w.size <= w.synced {
		if err := w.sync(); err != nil { // nothing to fsync: only lets go of pending
			w.fail(err)
		}
		return
	}
	f, size, upto := w.f, w.size, w.written
	w.syncing, w.urgent = true, false
	if w.timerArmed {
		w.syncTimer.Stop()
		w.timerArmed = false
	}
	go func() {
		start := time.Now()
		err := f.Sync()
		w.syncDone <- syncResult{err: err, size: size, upto: upto, took: time.Since(start)}
	}()
}

// finishSync takes the result of syncAsync: the records it covered are durable and let go
// of. With next, it starts the next fsync if one is due.
func (w *writer) finishSync(res syncResult, next bool) {
	w.syncing = false
	w.l.stats.syncNanos.Store(uint64(res.took))
	if res.err != nil {
		w.broken = true
		w.fail(res.err)
		return
	}
	w.synced = max(w.synced, res.size)
	n := copy(w.pending, w.pending[res.upto:])
	clear(w.pending[n:])
	w.pending = w.pending[:n]
	w.written -= res.upto
	if !next {
		return
	}
	if w.urgent {
		w.syncAsync()
	} else if w.size > w.synced && !w.timerArmed {
		w.syncTimer.Reset(w.l.cfg.SyncEvery)
		w.timerArmed = true
	}
}

// awaitSync waits for a running syncAsync and takes its result; every other use of the
// file's durable state (sync, repair) begins with it.
func (w *writer) awaitSync() {
	if w.syncing {
		w.finishSync(<-w.syncDone, false)
	}
}

// sync fsyncs the active segment and lets go of the records that are now durable.
func (w *writer) sync() error {
	w.awaitSync()
	if w.failing != nil && w.broken {
		return w.failing
	}
	if w.f != nil && w.size > w.synced {
		start := time.Now()
		err := w.f.Sync()
		w.l.stats.syncNanos.Store(uint64(time.Since(start)))
		if err != nil {
			w.broken = true
			return err
		}
		w.synced = w.size
	}
	n := copy(w.pending, w.pending[w.written:])
	clear(w.pending[n:])
	w.pending = w.pending[:n]
	w.written = 0
	w.urgent = false
	if w.timerArmed {
		w.syncTimer.Stop()
		w.timerArmed = false
	}
	return nil
}

// repair truncates a suspect active segment back to what is known to be on disk; the records
// after it are written again.
func (w *writer) repair() error {
	w.awaitSync()
	if err := w.f.Truncate(w.synced); err != nil {
		return err
	}
	w.size, w.written, w.broken = w.synced, 0, false
	if len(w.pending) > 0 {
		w.lastSeq = w.pending[0].Seq - 1
	}
	return nil
}

// rotate makes the active segment durable, seals it and starts the next.
func (w *writer) rotate() error {
	if err := w.sync(); err != nil {
		return err
	}
	if w.f == nil || w.size == 0 {
		return nil
	}
	if err := w.f.Close(); err != nil {
		w.l.log.Warn("close after fsync failed", "segment", w.active.name, "err", err)
	}
	w.f = nil
	w.sealPending = true
	if err := w.ensureActive(); err != nil {
		return err
	}
	w.retain(time.Now())
	return nil
}

// ensureActive finishes a rotation that was cut short: the rename of the old segment, the
// creation of the new one, the directory fsync. Each step is done once.
func (w *writer) ensureActive() error {
	l := w.l
	if w.sealPending {
		name := sealedName(w.active.first, w.active.minT, w.active.maxT)
		if err := os.Rename(l.path(w.active.name), l.path(name)); err != nil {
			return err
		}
		w.sealed = append(w.sealed, segment{name: name, first: w.active.first, sealed: true,
			minT: w.active.minT, maxT: w.active.maxT, size: w.size})
		w.sealPending, w.dirDirty = false, true
	}
	if w.f == nil {
		first := w.lastSeq + 1
		name := activeName(first)
		f, err := l.cfg.openFile(l.path(name), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
		if err != nil {
			return err
		}
		size, err := f.Seek(0, io.SeekEnd)
		if err != nil {
			f.Close()
			return err
		}
		w.f, w.active = f, segment{name: name, first: first}
		w.size, w.synced, w.dirDirty = size, size, true
	}
	if w.dirDirty {
		if err := syncDir(l.cfg.Dir); err != nil {
			return err
		}
		w.dirDirty = false
	}
	l.stats.segments.Store(uint64(len(w.sealed) + 1))
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// fail puts the log into the failing state: Append refuses with err, the writer keeps what it
// has and tries again every RetryEvery.
func (w *writer) fail(err error) {
	l := w.l
	l.stats.writeErrors.Add(1)
	if w.failing == nil {
		w.failing, w.failedAt = err, time.Now()
		l.mu.Lock()
		l.err = fmt.Errorf("audit: %w", err)
		l.mu.Unlock()
		l.log.Error("audit log failing: refusing records until writing works again",
			"err", err, "kept", len(w.pending))
		l.advance(0) // Flush returns the error
	}
	w.retryTimer.Reset(l.cfg.RetryEvery)
}

// retry tries the disk again; on success it writes what it kept and a summary of the records
// refused meanwhile, and the log is healthy again.
func (w *writer) retry() {
	err := w.writePending()
	if err == nil {
		err = w.sync()
	}
	if err != nil {
		w.l.stats.writeErrors.Add(1)
		w.retryTimer.Reset(w.l.cfg.RetryEvery)
		return
	}
	w.recovered()
}

// recovered ends a failure: the summary is queued, Append takes records again.
func (w *writer) recovered() {
	refused := w.summarize(true)
	w.l.log.Info("audit log writing again", "after", time.Since(w.failedAt).Round(time.Millisecond),
		"refused", refused)
	w.failing = nil
	w.step()
}

// summarize takes a summary record of refused records into pending, in seq order: under the
// lock it first takes everything still queued, then gives the summary the next seq. With
// failed, it also ends the failing state in the same critical section, so that no record is
// both refused and uncounted. It returns the count.
func (w *writer) summarize(failed bool) uint64 {
	l := w.l
	l.mu.Lock()
	defer l.mu.Unlock()
	for len(l.queue) > 0 {
		w.take(<-l.queue)
	}
	var count uint64
	add := func(reason string, n uint64) {
		r := &Record{Seq: l.next, Time: time.Now(), Box: l.cfg.Box, Level: l.cfg.Level,
			Kind: KindSummary, Reason: reason, Count: n}
		l.next++
		w.take(r)
		w.urgent = true
		l.stats.summaries.Add(1)
	}
	if failed {
		count = l.refusedFailing
		add(ReasonWriteFailed, l.refusedFailing)
		l.refusedFailing = 0
		l.err = nil
	}
	if l.refusedFull > 0 {
		add(ReasonQueueFull, l.refusedFull)
		l.refusedFull = 0
	}
	l.hasRefusedFull.Store(false)
	return count
}

// housekeep applies retention, first sealing an active segment whose records are all too old.
func (w *writer) housekeep(now time.Time) {
	if w.failing != nil {
		return
	}
	if w.f != nil && w.size > 0 && w.written == len(w.pending) &&
		w.active.maxT.Before(now.Add(-w.l.cfg.MaxAge)) {
		if err := w.rotate(); err != nil {
			w.fail(err)
			return
		}
	}
	w.retain(now)
}

// retain deletes sealed segments whose newest record is older than MaxAge, and the oldest
// while the total is above MaxTotal. Failing to delete is logged, never fatal.
func (w *writer) retain(now time.Time) {
	l := w.l
	cutoff := now.Add(-l.cfg.MaxAge)
	// Count the active segment at the size it may grow to, so that the log stays under
	// MaxTotal until the next rotation.
	total := max(w.size, l.cfg.SegmentSize)
	for _, s := range w.sealed {
		total += s.size
	}
	keep := w.sealed[:0]
	for _, s := range w.sealed {
		old := s.maxT.Before(cutoff)
		if old || total > l.cfg.MaxTotal {
			err := os.Remove(l.path(s.name))
			if err == nil || errors.Is(err, os.ErrNotExist) {
				total -= s.size
				l.stats.retainedDel.Add(1)
				l.log.Info("deleted a segment", "segment", s.name, "bytes", s.size, "too_old", old)
				continue
			}
			l.log.Warn("retention could not delete a segment", "segment", s.name, "err", err)
		}
		keep = append(keep, s)
	}
	clear(w.sealed[len(keep):])
	w.sealed = keep
	l.stats.segments.Store(uint64(len(w.sealed) + 1))
}

// shutdown serves Close: no more Appends arrive, so take the rest of the queue, write it with
// any summary due and fsync; one attempt even when failing.
func (w *writer) shutdown() {
	l := w.l
	w.awaitSync()
	w.summarize(w.failing != nil)
	err := w.writePending()
	if err == nil {
		err = w.sync()
	}
	if err != nil {
		lost := len(w.pending)
		w.closeErr = fmt.Errorf("audit: close: %d records not written: %w", lost, err)
		l.log.Error("audit log closed with records unwritten", "records", lost, "err", err)
	}
	if w.f != nil {
		if cerr := w.f.Close(); cerr != nil && w.closeErr == nil {
			w.closeErr = fmt.Errorf("audit: close: %w", cerr)
		}
		w.f = nil
	}
	w.syncTimer.Stop()
	w.retryTimer.Stop()
	w.lock.Close()
	l.closeFollowers()
}
