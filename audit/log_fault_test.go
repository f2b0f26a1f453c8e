package audit

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lnm-project/lnm/internal/testkit"
)

// faults makes the segment files of a Log fail on demand.
type faults struct {
	mu       sync.Mutex
	writeErr error // Write fails with it
	partial  bool  // … after writing half its buffer
	syncErr  error // Sync fails with it
	openErr  error // creating a segment fails with it
	block    chan struct{}
	// syncBlock, when set, holds every Sync until it is closed; syncing is told of each.
	syncBlock chan struct{}
	syncing   chan struct{}
}

func (fs *faults) set(fn func(*faults)) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fn(fs)
}

func (fs *faults) get() faults {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return faults{writeErr: fs.writeErr, partial: fs.partial, syncErr: fs.syncErr, openErr: fs.openErr, block: fs.block,
		syncBlock: fs.syncBlock, syncing: fs.syncing}
}

func (fs *faults) open(name string, flag int, perm os.FileMode) (segFile, error) {
	if err := fs.get().openErr; err != nil && flag&os.O_CREATE != 0 {
		return nil, &os.PathError{Op: "open", Path: name, Err: err}
	}
	f, err := os.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return &faultyFile{File: f, fs: fs}, nil
}

type faultyFile struct {
	*os.File
	fs *faults
}

func (f *faultyFile) Write(b []byte) (int, error) {
	cur := f.fs.get()
	if cur.block != nil {
		<-cur.block
	}
	if cur.writeErr != nil {
		n := 0
		if cur.partial {
			n, _ = f.File.Write(b[:len(b)/2])
		}
		return n, &os.PathError{Op: "write", Path: f.Name(), Err: cur.writeErr}
	}
	return f.File.Write(b)
}

func (f *faultyFile) Sync() error {
	if cur := f.fs.get(); cur.syncBlock != nil {
		select {
		case cur.syncing <- struct{}{}:
		default:
		}
		<-cur.syncBlock
	}
	if err := f.fs.get().syncErr; err != nil {
		return &os.PathError{Op: "sync", Path: f.Name(), Err: err}
	}
	return f.File.Sync()
}

// waitHealthy waits until Healthy returns nil.
func waitHealthy(t *testing.T, l *Log) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for l.Healthy() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("still failing: %v", l.Healthy())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// checkOutage checks the log an outage test leaves: seqs 1..kept in order, then a summary of
// the refused records, then after more records.
func checkOutage(t *testing.T, dir string, kept, after int, reason string, refused uint64) {
	t.Helper()
	recs := readAll(t, dir)
	checkSeqs(t, recs, 1)
	if len(recs) != kept+1+after {
		t.Fatalf("read %d records, want %d kept + summary + %d", len(recs), kept, after)
	}
	for i, r := range recs {
		if (i == kept) != (r.Kind == KindSummary && r.Reason == reason) {
			t.Fatalf("record %d: %s", i, r.AppendJSON(nil))
		}
	}
	if s := recs[kept]; s.Count != refused || s.Box != "l3" || s.Level != 3 {
		t.Fatalf("summary %s, want count %d", s.AppendJSON(nil), refused)
	}
}

func TestWriteFailure(t *testing.T) {
	const before, during, refused, after = 10, 7, 5, 3
	for _, tc := range []struct {
		name    string
		segSize int64
		fault   func(*faults)
		errno   error
	}{
		{"write ENOSPC, partial", 0, func(f *faults) { f.writeErr, f.partial = syscall.ENOSPC, true }, syscall.ENOSPC},
		{"write EIO", 0, func(f *faults) { f.writeErr = syscall.EIO }, syscall.EIO},
		{"fsync EIO after a good write", 0, func(f *faults) { f.syncErr = syscall.EIO }, syscall.EIO},
		{"new segment on a read-only fs", 1000, func(f *faults) { f.openErr = syscall.EROFS }, syscall.EROFS},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := &faults{}
			dir := t.TempDir()
			l := mustOpen(t, Config{Dir: dir, SegmentSize: tc.segSize, RetryEvery: 20 * time.Millisecond,
				Box: "l3", Level: 3, openFile: fs.open})
			defer l.Close()
			for i := range before {
				mustAppend(t, l, mixed(i, time.Time{}))
			}
			if err := l.Sync(); err != nil {
				t.Fatal(err)
			}
			// Records taken before the failure shows are kept, not lost. The writer is held
			// in its first write until all of them are queued.
			hold := make(chan struct{})
			fs.set(func(f *faults) { tc.fault(f); f.block = hold })
			for i := range during {
				mustAppend(t, l, mixed(i, time.Time{}))
			}
			fs.set(func(f *faults) { f.block = nil })
			close(hold)
			if err := l.Sync(); !errors.Is(err, tc.errno) {
				t.Fatalf("Sync = %v, want %v", err, tc.errno)
			}
			if err := l.Healthy(); !errors.Is(err, tc.errno) {
				t.Fatalf("Healthy = %v, want %v", err, tc.errno)
			}
			for i := range refused {
				if err := l.Append(mixed(i, time.Time{})); !errors.Is(err, tc.errno) {
					t.Fatalf("Append while failing = %v, want %v", err, tc.errno)
				}
			}
			// A retry fails before the disk is repaired (waited for: on a loaded machine the
			// writer may not run within any fixed time).
			deadline := time.Now().Add(30 * time.Second)
			for l.Stats().WriteErrors < 2 {
				if time.Now().After(deadline) {
					t.Fatalf("no retry failed in 30 s: %+v", l.Stats())
				}
				time.Sleep(5 * time.Millisecond)
			}
			fs.set(func(f *faults) { f.writeErr, f.partial, f.syncErr, f.openErr = nil, false, nil, nil })
			waitHealthy(t, l)
			for i := range after {
				mustAppend(t, l, mixed(i, time.Time{}))
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			s := l.Stats()
			if s.RefusedFailing != refused || s.WriteErrors < 2 || s.Summaries != 1 {
				t.Errorf("Stats: %+v", s)
			}
			checkOutage(t, dir, before+during, after, ReasonWriteFailed, refused)
		})
	}
}

func TestCloseWhileFailing(t *testing.T) {
	fs := &faults{}
	dir := t.TempDir()
	before := testkit.Goroutines()
	l := mustOpen(t, Config{Dir: dir, RetryEvery: time.Hour, openFile: fs.open})
	mustAppend(t, l, mixed(0, time.Time{}))
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	fs.set(func(f *faults) { f.writeErr = syscall.EIO })
	mustAppend(t, l, mixed(1, time.Time{}))
	if err := l.Sync(); err == nil {
		t.Fatal("Sync succeeded on a failing disk")
	}
	start := time.Now()
	if err := l.Close(); !errors.Is(err, syscall.EIO) {
		t.Fatalf("Close = %v, want the write error", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Close took %v", d)
	}
	before.NoneNew(t)
}

func TestQueueFull(t *testing.T) {
	fs := &faults{block: make(chan struct{})}
	dir := t.TempDir()
	const size = 8
	l := mustOpen(t, Config{Dir: dir, QueueSize: size, Box: "l3", Level: 3, openFile: fs.open})
	defer l.Close()
	// The writer takes the first record and blocks writing it; the queue then fills.
	taken, refused := 0, 0
	for i := range 100 {
		err := l.Append(mixed(i, time.Time{}))
		switch {
		case err == nil:
			taken++
		case errors.Is(err, ErrQueueFull):
			refused++
		default:
			t.Fatal(err)
		}
		if i == 0 {
			time.Sleep(50 * time.Millisecond)
		}
	}
	if taken < size || taken > size+1 || refused != 100-taken {
		t.Fatalf("%d taken, %d refused with a queue of %d", taken, refused, size)
	}
	if err := l.Healthy(); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("Healthy = %v, want ErrQueueFull", err)
	}
	fs.set(func(f *faults) { close(f.block); f.block = nil })
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	waitHealthy(t, l)
	mustAppend(t, l, mixed(0, time.Time{}))
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	checkOutage(t, dir, taken, 1, ReasonQueueFull, uint64(refused))
}

// TestDiskFull fills a real file system: the log fails closed, keeps what it took, and after
// space returns writes it, then a summary of what it refused.
func TestDiskFull(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("SKIPPED: needs root to mount a tmpfs")
	}
	mnt := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(mnt, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Skipf("SKIPPED: cannot mount a tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount: %v: %s", err, out)
		}
	})
	dir := filepath.Join(mnt, "audit")
	l := mustOpen(t, Config{Dir: dir, RetryEvery: 20 * time.Millisecond, Box: "l3", Level: 3})
	defer l.Close()
	const before = 10
	for i := range before {
		mustAppend(t, l, mixed(i, time.Time{}))
	}
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}

	filler := filepath.Join(mnt, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 4096)
	for {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("filling: %v", err)
			}
			break
		}
	}
	f.Close()

	// The active segment's last page may have room for a few records; write until it fails.
	kept := before
	for {
		if err := l.Append(mixed(kept, time.Time{})); err != nil {
			t.Fatalf("Append before the failure showed: %v", err)
		}
		kept++
		if err := l.Sync(); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("Sync = %v, want ENOSPC", err)
			}
			break
		}
		if kept > before+1000 {
			t.Fatal("the full file system took 1000 records")
		}
	}
	if err := l.Healthy(); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Healthy = %v, want ENOSPC", err)
	}
	const refused = 6
	for i := range refused {
		if err := l.Append(mixed(i, time.Time{})); !errors.Is(err, syscall.ENOSPC) {
			t.Fatalf("Append on a full disk = %v, want ENOSPC", err)
		}
	}
	time.Sleep(60 * time.Millisecond)
	if l.Healthy() == nil {
		t.Fatal("healthy again before space returned")
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	waitHealthy(t, l)
	const after = 4
	for i := range after {
		mustAppend(t, l, mixed(i, time.Time{}))
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	checkOutage(t, dir, kept, after, ReasonWriteFailed, refused)
	t.Logf("%d records kept through the outage, %d refused", kept-before, refused)
}
