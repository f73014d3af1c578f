package aggregator

import (
	"syscall"
	"testing"
	"time"
)

func TestReloadOnSIGHUP(t *testing.T) {
	reload, stop := ReloadOnSIGHUP()
	defer stop()
	for i := range 2 { // a second signal after the first was taken reloads again
		if err := syscall.Kill(syscall.Getpid(), syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		select {
		case <-reload:
		case <-time.After(10 * time.Second):
			t.Fatalf("SIGHUP %d: no reload", i+1)
		}
	}
}
