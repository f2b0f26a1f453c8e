package audit

import (
	"errors"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestFlushWrites: after Flush every record appended before it is in the segment file,
// though nothing was fsynced (SyncEvery an hour, nothing urgent), from several goroutines at
// once as the DNS read loops call it.
func TestFlushWrites(t *testing.T) {
	fs := &faults{syncErr: syscall.EIO} // an fsync would fail the log
	dir := filepath.Join(t.TempDir(), "audit")
	l := mustOpen(t, Config{Dir: dir, SyncEvery: time.Hour, Urgent: func(*Record) bool { return false }, openFile: fs.open})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 50 {
				r := mixed(g*50+i, time.Time{})
				if err := l.Append(r); err != nil {
					t.Errorf("Append: %v", err)
					return
				}
				if err := l.Flush(); err != nil {
					t.Errorf("Flush: %v", err)
					return
				}
				if st := l.Stats(); st.Records < r.Seq {
					t.Errorf("after Flush %d records written, want at least %d", st.Records, r.Seq)
					return
				}
			}
		})
	}
	wg.Wait()
	if recs := readAll(t, dir); len(recs) != 200 {
		t.Fatalf("%d records in the file before any fsync, want 200", len(recs))
	}
	checkSeqs(t, readAll(t, dir), 1)
	if err := l.Flush(); err != nil { // nothing new: returns at once
		t.Fatal(err)
	}
}

// TestFlushFailing: while the writer fails, Flush says so instead of waiting.
func TestFlushFailing(t *testing.T) {
	fs := &faults{}
	l := mustOpen(t, Config{Dir: t.TempDir(), RetryEvery: time.Hour, openFile: fs.open})
	fs.set(func(f *faults) { f.writeErr = syscall.EIO })
	mustAppend(t, l, mixed(0, time.Time{}))
	if err := l.Flush(); err == nil {
		t.Fatal("Flush succeeded on a failing disk")
	}
	if err := l.Flush(); err == nil {
		t.Fatal("a second Flush succeeded on a failing disk")
	}
}

// TestFlushDuringFsync: a slow fsync does not hold up Flush. Every record is urgent (fsynced
// at once, as denials are); with the fsync blocked, records appended after it still reach the
// file, and Sync waits for the fsync.
func TestFlushDuringFsync(t *testing.T) {
	fs := &faults{syncBlock: make(chan struct{}), syncing: make(chan struct{}, 1)}
	dir := filepath.Join(t.TempDir(), "audit")
	l := mustOpen(t, Config{Dir: dir, Urgent: func(*Record) bool { return true }, openFile: fs.open})
	mustAppend(t, l, mixed(0, time.Time{}))
	if err := l.Flush(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-fs.syncing:
	case <-time.After(10 * time.Second):
		t.Fatal("the urgent record was never fsynced")
	}
	flushed := make(chan error, 1)
	go func() {
		for i := 1; i <= 20; i++ {
			if err := l.Append(mixed(i, time.Time{})); err != nil {
				flushed <- err
				return
			}
			if err := l.Flush(); err != nil {
				flushed <- err
				return
			}
		}
		flushed <- nil
	}()
	select {
	case err := <-flushed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		close(fs.syncBlock)
		t.Fatal("Flush waited for the held fsync")
	}
	if recs := readAll(t, dir); len(recs) != 21 {
		t.Fatalf("%d records in the file while an fsync is held, want 21", len(recs))
	}
	synced := make(chan error, 1)
	go func() { synced <- l.Sync() }()
	select {
	case err := <-synced:
		t.Fatalf("Sync returned %v while the fsync is held", err)
	case <-fs.syncing: // the writer is not blocked: a second fsync may start only after the first
		t.Fatal("a second fsync started while the first runs")
	default:
	}
	close(fs.syncBlock)
	if err := <-synced; err != nil {
		t.Fatal(err)
	}
}

// TestFlushHungDisk: a write that never returns costs Flush FlushTimeout, not forever.
func TestFlushHungDisk(t *testing.T) {
	fs := &faults{block: make(chan struct{})}
	l := mustOpen(t, Config{Dir: t.TempDir(), openFile: fs.open})
	defer close(fs.block) // before Close (deferred by mustOpen), which writes what is left
	mustAppend(t, l, mixed(0, time.Time{}))
	if err := l.Flush(); !errors.Is(err, ErrFlushTimeout) {
		t.Fatalf("Flush = %v, want ErrFlushTimeout", err)
	}
}
