package audit

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// crashEnv selects the child mode of TestCrash: append until killed.
const crashEnv = "LNM_AUDIT_CRASH_DIR"

// crashChild appends bursts of records (some 20,000 a second) and prints "synced N" after
// each Sync that covered every seq up to N. It runs until the parent kills it.
func crashChild(dir string) {
	l, err := Open(Config{Dir: dir, SyncEvery: 100 * time.Millisecond, SegmentSize: 256 << 10})
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(2)
	}
	go func() {
		for i := 0; ; i++ {
			if err := l.Append(mixed(i, time.Time{})); err != nil {
				if !errors.Is(err, ErrQueueFull) {
					fmt.Println("append:", err)
					os.Exit(2)
				}
				time.Sleep(time.Millisecond)
			}
			if i%20 == 0 {
				time.Sleep(time.Millisecond)
			}
		}
	}()
	out := bufio.NewWriter(os.Stdout)
	for {
		seq := l.LastSeq()
		if err := l.Sync(); err != nil {
			fmt.Fprintln(out, "sync:", err)
			out.Flush()
			os.Exit(2)
		}
		fmt.Fprintf(out, "synced %d\n", seq)
		out.Flush()
		time.Sleep(5 * time.Millisecond)
	}
}

// TestCrash kills a process that appends under load and checks that every record it saw
// fsynced is on disk and readable, and that the log opens again and continues the seq.
func TestCrash(t *testing.T) {
	if dir := os.Getenv(crashEnv); dir != "" {
		crashChild(dir)
		return
	}
	for _, tc := range []struct {
		name  string
		syncs int // kill after this many synced lines
	}{
		{"early", 3},
		{"under load, across rotations", 150},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			cmd := exec.Command(os.Args[0], "-test.run=^TestCrash$", "-test.count=1")
			cmd.Env = append(os.Environ(), crashEnv+"="+dir)
			cmd.Stderr = os.Stderr
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			var synced uint64
			lines := 0
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				s, ok := strings.CutPrefix(sc.Text(), "synced ")
				if !ok {
					t.Errorf("child: %s", sc.Text())
					continue
				}
				n, err := strconv.ParseUint(s, 10, 64)
				if err != nil {
					t.Fatalf("child: %q", sc.Text())
				}
				synced = max(synced, n)
				if lines++; lines == tc.syncs {
					if err := cmd.Process.Kill(); err != nil { // SIGKILL
						t.Fatal(err)
					}
				}
			}
			cmd.Wait()
			if lines < tc.syncs {
				t.Fatalf("child printed %d synced lines before it ended", lines)
			}
			if synced == 0 {
				t.Fatal("child synced nothing")
			}

			recs := readAll(t, dir)
			checkSeqs(t, recs, 1)
			if uint64(len(recs)) < synced {
				t.Fatalf("%d records on disk, but the child saw %d fsynced", len(recs), synced)
			}
			l, err := Open(Config{Dir: dir})
			if err != nil {
				t.Fatalf("Open after kill -9: %v", err)
			}
			last := l.LastSeq()
			if last != uint64(len(recs)) {
				t.Errorf("LastSeq = %d, %d records readable", last, len(recs))
			}
			r := mixed(0, time.Time{})
			mustAppend(t, l, r)
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			if r.Seq != last+1 {
				t.Errorf("seq after the crash %d, want %d", r.Seq, last+1)
			}
			checkSeqs(t, readAll(t, dir), 1)
			t.Logf("killed after %d fsynced records; %d on disk", synced, len(recs))
		})
	}
}
