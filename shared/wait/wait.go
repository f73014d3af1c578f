// Package wait polls a condition with a deadline: what tests use instead of
// sleeping for a fixed time.
package wait

import (
	"testing"
	"time"
)

// Interval is how often For checks its condition.
const Interval = 10 * time.Millisecond

// For polls cond every Interval until it returns true or timeout passes, in
// which case the test fails naming what it waited for.
func For(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	if !Until(timeout, cond) {
		t.Fatalf("timed out after %v waiting for %s", timeout, what)
	}
}

// Until polls cond every Interval until it returns true (true) or timeout
// passes (false).
func Until(timeout time.Duration, cond func() bool) bool {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(Interval)
	defer tick.Stop()
	for {
		if cond() {
			return true
		}
		select {
		case <-deadline.C:
			return cond()
		case <-tick.C:
		}
	}
}

// Check polls check every `every` until it returns nil; when timeout passes
// first, the test fails naming what it waited for and the last error, so a
// failure says what was still wrong. For conditions that are costly to
// evaluate (a stream read), where For's 10ms polling would load the machine.
func Check(t testing.TB, timeout, every time.Duration, what string, check func() error) {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		err := check()
		if err == nil {
			return
		}
		select {
		case <-deadline.C:
			if err = check(); err != nil {
				t.Fatalf("timed out after %v waiting for %s: %v", timeout, what, err)
			}
			return
		case <-tick.C:
		}
	}
}
