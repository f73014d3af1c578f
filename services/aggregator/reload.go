package aggregator

import (
	"os"
	"os/signal"
	"syscall"
)

// ReloadOnSIGHUP returns a channel for Options.Reload that receives when the
// process gets SIGHUP (signals arriving during a reload fold into one), and a
// stop function that ends the forwarding.
func ReloadOnSIGHUP() (<-chan struct{}, func()) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	reload := make(chan struct{}, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range hup {
			select {
			case reload <- struct{}{}:
			default:
			}
		}
	}()
	return reload, func() {
		signal.Stop(hup)
		close(hup)
		<-done
	}
}
