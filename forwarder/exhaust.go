package forwarder

import (
	"errors"
	"syscall"
	"time"
)

// outOfDescriptors reports whether err is the process or the system running out of file
// descriptors (EMFILE, ENFILE): the box's own exhaustion, to be named as such.
func outOfDescriptors(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE)
}

// acceptFailures summarizes a listener's failing accepts: the first failure of a run is
// logged, the rest are counted, and the run's total is logged when accepting works again,
// so a full descriptor table writes two lines, not one per retry. It also paces the retries,
// from 5 ms doubling to 1 s, as net/http does, so that the failing loop does not spin a core.
// The zero value is a listener with no failure.
type acceptFailures struct {
	run   int // failures since the last successful accept
	delay time.Duration
}

// failed counts one failure and returns how long to wait before the next accept, and
// whether this is the first failure of a run (the one to log).
func (a *acceptFailures) failed() (wait time.Duration, first bool) {
	a.run++
	a.delay = min(max(2*a.delay, 5*time.Millisecond), time.Second)
	return a.delay, a.run == 1
}

// ok records a successful accept and returns how many failures the run that it ends had
// (0: there was none).
func (a *acceptFailures) ok() int {
	n := a.run
	a.run, a.delay = 0, 0
	return n
}
