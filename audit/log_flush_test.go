package audit

import (
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
