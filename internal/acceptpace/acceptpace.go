// Package acceptpace paces a listener's accept loop through a run of failures (running out
// of file descriptors, most often): retries back off from 5 ms doubling to 1 s, as net/http
// does, so the loop does not spin a core, and a run is logged twice, when it starts and
// when accepting works again, not once per retry.
package acceptpace

import "time"

// Pacer is one listener's state. The zero value is a listener with no failure.
type Pacer struct {
	run   int // failures since the last successful accept
	delay time.Duration
}

// Failed counts one failure and returns how long to wait before the next accept, and
// whether this is the first failure of a run (the one to log).
func (a *Pacer) Failed() (wait time.Duration, first bool) {
	a.run++
	a.delay = min(max(2*a.delay, 5*time.Millisecond), time.Second)
	return a.delay, a.run == 1
}

// OK records a successful accept and returns how many failures the run it ends had (0: there
// was none).
func (a *Pacer) OK() int {
	n := a.run
	a.run, a.delay = 0, 0
	return n
}
