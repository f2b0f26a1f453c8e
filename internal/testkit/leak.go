package testkit

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

// Main is the TestMain of a package whose tests start goroutines: it runs the tests, fails
// the run if any goroutine they started is still running at the end (waiting briefly for
// those winding down), then runs after (removing files the tests shared) and exits.
func Main(m *testing.M, after ...func()) {
	goleak.VerifyTestMain(m, ignorePoller, goleak.Cleanup(func(code int) {
		for _, f := range after {
			f()
		}
		os.Exit(code)
	}))
}

// ignorePoller passes the goroutine of the process's shared netpoll.Poller, which the first
// spliced stream starts and which lives as long as the process, by design.
var ignorePoller = goleak.IgnoreAnyFunction("github.com/lnm-project/lnm/internal/netpoll.(*Poller).loop")

// NoLeaks fails t if a goroutine started after this call still runs when t ends. Call it
// before starting what the test stops at cleanup: cleanups run last-registered first, so the
// check runs after them. It pins a leak to one test where Main only sees the package.
func NoLeaks(t testing.TB) {
	t.Helper()
	before := Goroutines()
	t.Cleanup(func() { before.NoneNew(t) })
}

// Baseline is the goroutines that ran at one moment. The zero value has none, so NoneNew
// on it fails for every goroutine but the runtime's and testing's own.
type Baseline struct {
	running goleak.Option
}

// Goroutines is the goroutines running now, for a check at a moment NoLeaks's cleanup comes
// too late for (while a client still holds a connection open, say).
func Goroutines() Baseline { return Baseline{running: goleak.IgnoreCurrent()} }

// NoneNew fails t if a goroutine that is not in the baseline is running, after waiting
// briefly for those winding down.
func (b Baseline) NoneNew(t testing.TB) {
	t.Helper()
	opts := []goleak.Option{ignorePoller}
	if b.running != nil {
		opts = append(opts, b.running)
	}
	if err := goleak.Find(opts...); err != nil {
		t.Errorf("goroutines outlive the test: %v", err)
	}
}
