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
	goleak.VerifyTestMain(m, goleak.Cleanup(func(code int) {
		for _, f := range after {
			f()
		}
		os.Exit(code)
	}))
}

// NoLeaks fails t if a goroutine started after this call still runs when t ends. Call it
// before starting what the test stops at cleanup: cleanups run last-registered first, so the
// check runs after them. It pins a leak to one test where Main only sees the package.
func NoLeaks(t testing.TB) {
	t.Helper()
	running := goleak.IgnoreCurrent()
	t.Cleanup(func() {
		if err := goleak.Find(running); err != nil {
			t.Errorf("goroutines outlive the test: %v", err)
		}
	})
}
