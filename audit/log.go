package audit

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Errors Append and Healthy return besides the sticky write error.
var (
	// ErrQueueFull: the writer is behind by QueueSize records. The record was not taken.
	ErrQueueFull = errors.New("audit: queue full")
	// ErrClosed: the log is closed. The record was not taken.
	ErrClosed = errors.New("audit: log closed")
	// ErrFlushTimeout: Flush waited FlushTimeout and the writer had not written the records.
	ErrFlushTimeout = errors.New("audit: flush: the writer did not write the records in time")
)

// Reasons of the summary records the log writes itself.
const (
	// ReasonWriteFailed: writing failed; Count records were refused until it worked again.
	ReasonWriteFailed = "audit_write_failed"
	// ReasonQueueFull: Count records were refused because the queue was full.
	ReasonQueueFull = "audit_queue_full"
)

// Reasons lists the reasons of the summaries the log writes itself, for documentation tests.
func Reasons() []string { return []string{ReasonWriteFailed, ReasonQueueFull} }

// Config configures a Log. Only Dir is required.
type Config struct {
	// Dir holds the segments. It is created with mode 0750 if missing. Required.
	Dir string
	// SyncEvery is the group-commit interval: a written record is fsynced at most this long
	// after it was written, and fsyncs happen at most this often (urgent records aside).
	// Zero: 100ms.
	SyncEvery time.Duration
	// SyncAlways fsyncs each write before the writer takes more records (`fsync always`).
	// Records enqueued together are written and fsynced together. False: group commit.
	SyncAlways bool
	// Urgent picks records fsynced as soon as they are written, without waiting for
	// SyncEvery. Nil: config changes and denials (verdict deny or refused, event deny).
	Urgent func(*Record) bool
	// SegmentSize is the size a segment may reach; a record that would take it past is
	// written to a new segment (a single larger record gets a segment of its own).
	// Zero: 64 MiB.
	SegmentSize int64
	// MaxAge: segments whose newest record is older are deleted. Zero: 90 days.
	MaxAge time.Duration
	// MaxTotal: the oldest segments are deleted while all segments together, the active one
	// counted at SegmentSize, are larger, so the log stays under MaxTotal (give or take one
	// record). The active segment is never deleted; SegmentSize is capped at MaxTotal/4.
	// Zero: 4 GiB.
	MaxTotal int64
	// QueueSize is how many records may wait for the writer before Append refuses more.
	// Zero: 65,536, a second and more of a busy box's DNS (50,000 queries a second) while
	// an fsync stalls on a slow disk, and about 35 MB at most.
	QueueSize int
	// RetryEvery is how often a failing writer tries the disk again. Zero: 1s.
	RetryEvery time.Duration
	// Box and Level are stamped on the summary records the log writes itself. Zero: left out.
	Box   string
	Level int
	// Logger receives failures, recoveries, torn tails cut and retention. Nil: discard.
	Logger *slog.Logger

	// openFile opens segment files; tests replace it to inject faults. Nil: os.OpenFile.
	openFile func(name string, flag int, perm os.FileMode) (segFile, error)
}

// segFile is the part of *os.File the writer uses.
type segFile interface {
	io.Writer
	Sync() error
	Truncate(size int64) error
	Seek(offset int64, whence int) (int64, error)
	Close() error
}

// Defaults of Config's zero values.
const (
	DefaultSyncEvery   = 100 * time.Millisecond
	DefaultSegmentSize = 64 << 20
	DefaultMaxAge      = 90 * 24 * time.Hour
	DefaultMaxTotal    = 4 << 30
	DefaultQueueSize   = 65_536
	DefaultRetryEvery  = time.Second
)

// FlushTimeout bounds Flush when the disk hangs.
const FlushTimeout = time.Second

// closeTimeout bounds Close when the disk hangs.
const closeTimeout = 10 * time.Second

// followBuffer is how many records a follower may lag before it is dropped. The writer hands
// records over a batch at a time, and at 20,000 records a second a batch alone held more than
// 1,024, so every follower (the console's Live page, `lnm audit follow`) was dropped at once.
// 4,096 is 200 ms at that rate; the channel costs 2 MiB per follower (a Record is 520 bytes).
const followBuffer = 4096

// Log is the durable audit log: Append hands records to a writer goroutine that writes them as
// JSON Lines, fsyncs them in groups, rotates and prunes segments. Safe for concurrent use.
type Log struct {
	cfg Config
	log *slog.Logger

	mu             sync.Mutex
	next           uint64 // the seq Append gives next
	err            error  // sticky while the writer is failing
	closed         bool
	refusedFailing uint64 // refused since the failure began, for its summary
	refusedFull    uint64 // refused for a full queue since the last summary

	queue    chan *Record
	syncReq  chan chan error
	flushReq chan struct{} // cap 1: a Flush waits for the writer

	// wseq is the seq of the last record written to a segment file; wchan is closed and
	// replaced whenever it moves or the writer fails, waking Flush.
	wmu   sync.Mutex
	wseq  uint64
	wchan chan struct{}

	closing chan struct{}
	done    chan struct{}

	closeOnce sync.Once
	closeErr  error

	fmu       sync.Mutex
	followers map[*follower]struct{}
	fclosed   bool // no more followers: the writer has stopped

	w     *writer // owned by the writer goroutine after Open
	stats struct {
		records, bytes, writes, writeErrors     atomic.Uint64
		syncNanos                               atomic.Uint64
		refusedFailing, refusedFull, summaries  atomic.Uint64
		segments, followersDropped, retainedDel atomic.Uint64
	}
	hasRefusedFull atomic.Bool
}

// Open opens the log in cfg.Dir, creating it if needed. It scans the segments for the last
// seq, cuts a torn last line off the last segment (logging what it cut), applies retention and
// starts the writer. Seqs continue where the previous run stopped. Only one Log may have a
// directory open at a time.
func Open(cfg Config) (*Log, error) {
	if cfg.Dir == "" {
		return nil, errors.New("audit: no directory")
	}
	if cfg.SyncEvery <= 0 {
		cfg.SyncEvery = DefaultSyncEvery
	}
	if cfg.Urgent == nil {
		cfg.Urgent = urgentDefault
	}
	if cfg.SegmentSize <= 0 {
		cfg.SegmentSize = DefaultSegmentSize
	}
	if cfg.MaxAge <= 0 {
		cfg.MaxAge = DefaultMaxAge
	}
	if cfg.MaxTotal <= 0 {
		cfg.MaxTotal = DefaultMaxTotal
	}
	// Keep a few sealed segments within MaxTotal.
	cfg.SegmentSize = min(cfg.SegmentSize, max(cfg.MaxTotal/4, 1))
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = DefaultQueueSize
	}
	if cfg.RetryEvery <= 0 {
		cfg.RetryEvery = DefaultRetryEvery
	}
	if cfg.openFile == nil {
		cfg.openFile = func(name string, flag int, perm os.FileMode) (segFile, error) {
			return os.OpenFile(name, flag, perm)
		}
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = logger.With("pkg", "audit")
	if err := os.MkdirAll(cfg.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	lockf, err := lockDir(cfg.Dir)
	if err != nil {
		return nil, err
	}
	l := &Log{
		cfg:       cfg,
		log:       logger,
		queue:     make(chan *Record, cfg.QueueSize),
		syncReq:   make(chan chan error),
		flushReq:  make(chan struct{}, 1),
		wchan:     make(chan struct{}),
		closing:   make(chan struct{}),
		done:      make(chan struct{}),
		followers: make(map[*follower]struct{}),
	}
	w := &writer{l: l, lock: lockf}
	if err := w.open(); err != nil {
		lockf.Close()
		return nil, err
	}
	l.w = w
	l.next = w.lastSeq + 1
	l.wseq = w.lastSeq
	go w.run()
	return l, nil
}

// lockDir takes an exclusive flock on the directory, so that two boxes (or two runs) never
// interleave writes in one log. The lock dies with the process.
func lockDir(dir string) (*os.File, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("audit: %s is in use by another log", dir)
		}
		return nil, fmt.Errorf("audit: lock %s: %w", dir, err)
	}
	return f, nil
}

func urgentDefault(r *Record) bool {
	return r.Kind == KindConfig || r.Event == EventDeny || r.Verdict == VerdictDeny || r.Verdict == VerdictRefused
}

// Append gives r the next seq (and the current time if r.Time is zero) and queues it for the
// writer. It never waits on the disk. The log owns r from then on: don't modify it. The log
// itself never modifies r after Append returns, so reading r (its Seq) stays safe.
//
// While the writer is failing Append returns its error, and ErrQueueFull when the writer is
// behind; the record is then not taken and is counted in a summary record later. Callers fail
// closed on any error.
func (l *Log) Append(r *Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.closed:
		return ErrClosed
	case l.err != nil:
		l.refusedFailing++
		l.stats.refusedFailing.Add(1)
		return l.err
	}
	if r.Time.IsZero() {
		r.Time = time.Now()
	}
	r.Seq = l.next
	select {
	case l.queue <- r:
		l.next++
		return nil
	default:
		r.Seq = 0
		l.refusedFull++
		l.stats.refusedFull.Add(1)
		l.hasRefusedFull.Store(true)
		return ErrQueueFull
	}
}

// LastSeq returns the seq Append gave last (or the last seq on disk at Open).
func (l *Log) LastSeq() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.next - 1
}

// Healthy returns nil while writes work and the queue has room, else why not.
func (l *Log) Healthy() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.closed:
		return ErrClosed
	case l.err != nil:
		return l.err
	case len(l.queue) == cap(l.queue):
		return ErrQueueFull
	}
	return nil
}

// Sync returns once every record appended before the call is written and fsynced, or with the
// writer's error.
func (l *Log) Sync() error {
	reply := make(chan error, 1)
	select {
	case l.syncReq <- reply:
	case <-l.done:
		return ErrClosed
	}
	select {
	case err := <-reply:
		return err
	case <-l.done:
		return ErrClosed
	}
}

// Flush returns once every record appended before the call is written to the segment file:
// in the kernel (write(2)), where a crash of the process cannot lose it, though power loss
// still can until the fsync that follows on the log's schedule (SyncEvery, or at once for
// urgent records). A data path calls it before its answers leave, so that no answer a client
// saw lacks its record after a crash; records appended together are written together, so
// one Flush serves a batch. It returns the writer's error while the log is failing, and
// ErrFlushTimeout when the writer has not written the records within FlushTimeout (a disk
// that hangs): the caller withholds its answers, and the next Flush tries again.
func (l *Log) Flush() error {
	l.mu.Lock()
	target, err := l.next-1, l.err
	l.mu.Unlock()
	if err != nil {
		return err
	}
	var timeout <-chan time.Time
	for {
		l.wmu.Lock()
		done, ch := l.wseq >= target, l.wchan
		l.wmu.Unlock()
		if done {
			return nil
		}
		select {
		case l.flushReq <- struct{}{}:
		default: // a request is pending already
		}
		if timeout == nil {
			t := time.NewTimer(FlushTimeout)
			defer t.Stop()
			timeout = t.C
		}
		select {
		case <-ch:
		case <-timeout:
			return ErrFlushTimeout
		case <-l.done:
			l.wmu.Lock()
			done := l.wseq >= target
			l.wmu.Unlock()
			if done {
				return nil
			}
			return ErrClosed
		}
		l.mu.Lock()
		err := l.err
		l.mu.Unlock()
		if err != nil {
			return err
		}
	}
}

// advance records that the records up to seq are in the file and wakes Flush; the writer
// calls it with 0 when it fails, so that waiters see the error.
func (l *Log) advance(seq uint64) {
	l.wmu.Lock()
	l.wseq = max(l.wseq, seq)
	close(l.wchan)
	l.wchan = make(chan struct{})
	l.wmu.Unlock()
}

// Close stops taking records, writes and fsyncs everything queued and closes the files: a
// graceful stop loses nothing. It returns the writer's error if records could not be written.
// It is idempotent and gives up after 10s if the disk hangs.
func (l *Log) Close() error {
	l.closeOnce.Do(func() {
		l.mu.Lock()
		l.closed = true
		l.mu.Unlock()
		close(l.closing)
		select {
		case <-l.done:
			l.closeErr = l.w.closeErr
		case <-time.After(closeTimeout):
			l.closeErr = fmt.Errorf("audit: close: the writer did not finish in %v", closeTimeout)
		}
	})
	return l.closeErr
}

// Stats are the log's counters, for metrics and `lnm status`. Counters count since Open.
type Stats struct {
	QueueDepth     int           // records waiting for the writer
	QueueSize      int           // capacity of the queue
	LastSeq        uint64        // seq Append gave last
	Records        uint64        // records written (not necessarily fsynced yet)
	Bytes          uint64        // bytes written
	Writes         uint64        // write(2) calls that wrote them: records arrive in batches
	WriteErrors    uint64        // failed writes, fsyncs and rotations, retries included
	LastSync       time.Duration // latency of the last fsync
	RefusedFailing uint64        // records Append refused while the writer was failing
	RefusedFull    uint64        // records Append refused because the queue was full
	Summaries      uint64        // summary records the log wrote about refusals
	Segments       int           // segment files, the active one included
	Followers      int           // live followers
	FollowsDropped uint64        // followers dropped for falling behind
	Deleted        uint64        // segments deleted by retention
	Err            error         // non-nil while failing
}

// Stats returns the current counters.
func (l *Log) Stats() Stats {
	l.mu.Lock()
	s := Stats{QueueDepth: len(l.queue), QueueSize: cap(l.queue), LastSeq: l.next - 1, Err: l.err}
	l.mu.Unlock()
	l.fmu.Lock()
	s.Followers = len(l.followers)
	l.fmu.Unlock()
	s.Records = l.stats.records.Load()
	s.Bytes = l.stats.bytes.Load()
	s.Writes = l.stats.writes.Load()
	s.WriteErrors = l.stats.writeErrors.Load()
	s.LastSync = time.Duration(l.stats.syncNanos.Load())
	s.RefusedFailing = l.stats.refusedFailing.Load()
	s.RefusedFull = l.stats.refusedFull.Load()
	s.Summaries = l.stats.summaries.Load()
	s.Segments = int(l.stats.segments.Load())
	s.FollowsDropped = l.stats.followersDropped.Load()
	s.Deleted = l.stats.retainedDel.Load()
	return s
}

// follower is one Follow stream.
type follower struct {
	f  Filter
	ch chan Record
}

// Follow streams records matching f (Limit ignored) as the writer writes them, before they
// are fsynced. A follower that falls followBuffer records behind is dropped: its channel is
// closed, and the writer never waits for it. The returned func stops the stream and closes
// the channel; it may be called more than once. Close also closes every follower's channel.
func (l *Log) Follow(f Filter) (<-chan Record, func()) {
	fo := &follower{f: f, ch: make(chan Record, followBuffer)}
	l.fmu.Lock()
	if l.fclosed {
		close(fo.ch)
	} else {
		l.followers[fo] = struct{}{}
	}
	l.fmu.Unlock()
	return fo.ch, func() {
		l.fmu.Lock()
		defer l.fmu.Unlock()
		if _, ok := l.followers[fo]; ok {
			delete(l.followers, fo)
			close(fo.ch)
		}
	}
}

// publish hands written records to the followers; called by the writer only.
func (l *Log) publish(recs []*Record) {
	l.fmu.Lock()
	defer l.fmu.Unlock()
	for fo := range l.followers {
		for _, r := range recs {
			if !fo.f.Match(r) {
				continue
			}
			select {
			case fo.ch <- *r:
			default:
				delete(l.followers, fo)
				close(fo.ch)
				l.stats.followersDropped.Add(1)
				l.log.Warn("audit follower dropped: too slow", "behind", followBuffer)
			}
			if _, ok := l.followers[fo]; !ok {
				break
			}
		}
	}
}

func (l *Log) closeFollowers() {
	l.fmu.Lock()
	defer l.fmu.Unlock()
	l.fclosed = true
	for fo := range l.followers {
		delete(l.followers, fo)
		close(fo.ch)
	}
}

// path joins a segment name to the directory.
func (l *Log) path(name string) string { return filepath.Join(l.cfg.Dir, name) }
