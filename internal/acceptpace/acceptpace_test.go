package acceptpace

import (
	"testing"
	"time"
)

// TestPacer: a run of failed accepts is logged once at its start and once, with
// its count, when accepting works again; retries back off from 5 ms to at most 1 s.
func TestPacer(t *testing.T) {
	var a Pacer
	if n := a.OK(); n != 0 {
		t.Fatalf("no failure yet, ok() = %d", n)
	}
	var waits []time.Duration
	for i := range 10 {
		wait, first := a.Failed()
		if first != (i == 0) {
			t.Errorf("failure %d: first = %v", i+1, first)
		}
		waits = append(waits, wait)
	}
	if waits[0] != 5*time.Millisecond || waits[1] != 10*time.Millisecond || waits[9] != time.Second {
		t.Errorf("backoff %v, want 5ms doubling to 1s", waits)
	}
	if n := a.OK(); n != 10 {
		t.Errorf("ok() after 10 failures = %d", n)
	}
	if wait, first := a.Failed(); !first || wait != 5*time.Millisecond {
		t.Errorf("a new run starts over: %v, first %v", wait, first)
	}
}
