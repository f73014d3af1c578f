package probe

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/healthmesh/healthmesh/shared/event"
	"github.com/vishvananda/netns"
)

// errNetns wraps every failure to enter or leave a network namespace; such a
// failure is local (SOCKERR), not a verdict on the target.
var errNetns = errors.New("netns")

// inNetns runs fn on an OS thread switched into the named network namespace,
// then switches the thread back. Sockets created by fn keep the namespace
// they were created in, so they can be used from any goroutine afterwards.
// With name "" it just calls fn.
//
// fn runs on a goroutine of its own, locked to its thread: if the thread
// cannot be switched back it stays locked and the runtime discards it when
// the goroutine ends, so no other goroutine ever runs in the wrong namespace.
func inNetns(name string, fn func() error) error {
	if name == "" {
		return fn()
	}
	if strings.ContainsRune(name, '/') || name == "." || name == ".." {
		return fmt.Errorf("%w %q: a namespace name may not contain '/'", errNetns, name)
	}
	errc := make(chan error, 1) // written once by the goroutine below
	go func() {
		runtime.LockOSThread()
		errc <- runInNetns(name, fn)
	}()
	return <-errc
}

// runInNetns must be called on a locked thread; it unlocks it only once the
// thread is back in its original namespace.
func runInNetns(name string, fn func() error) error {
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("%w: current namespace: %v", errNetns, err)
	}
	defer orig.Close()
	target, err := netns.GetFromName(name)
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("%w %q: %v", errNetns, name, err)
	}
	defer target.Close()
	if err := netns.Set(target); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("%w %q: enter: %v", errNetns, name, err)
	}
	ferr := fn()
	if err := netns.Set(orig); err != nil {
		// Leave the thread locked: it dies with this goroutine.
		return errors.Join(ferr, fmt.Errorf("%w %q: leave: %v", errNetns, name, err))
	}
	runtime.UnlockOSThread()
	return ferr
}

// dialConn connects network ("tcp" or "udp") to t's address, from t.Source
// and inside t.Netns when set, bounded by ctx.
func dialConn(ctx context.Context, network string, t *Target) (net.Conn, error) {
	// No TCP keep-alive: a probe's connection lives for less than a second,
	// and enabling it costs four system calls per probe.
	d := net.Dialer{KeepAlive: -1}
	if t.Source.IsValid() {
		src := t.Source.Unmap()
		if network == "udp" {
			d.LocalAddr = &net.UDPAddr{IP: src.AsSlice(), Zone: src.Zone()}
		} else {
			d.LocalAddr = &net.TCPAddr{IP: src.AsSlice(), Zone: src.Zone()}
		}
	}
	addr := dest(t).String()
	var c net.Conn
	err := inNetns(t.Netns, func() error {
		var err error
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// closeReset closes a probe's TCP connection with a reset rather than a
// FIN, so that it does not sit in TIME_WAIT (see startConnect).
func closeReset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}

// watchCtx makes c's pending and future I/O fail as soon as ctx is done, so
// a probe canceled by its owner returns at once; the returned func stops
// the watch.
func watchCtx(ctx context.Context, c net.Conn) func() bool {
	return context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
}

// connFailure classifies a failed connect (or socket setup) into a Result.
func connFailure(err error, rtt time.Duration) Result {
	switch {
	case isLocalSetup(err):
		return sockErr(rtt, errDetail(err))
	case errors.Is(err, context.Canceled):
		return procErr(rtt, "probe canceled")
	case isTimeout(err):
		return down(event.ReasonL4TOUT, rtt, "connect timeout")
	}
	return down(event.ReasonL4CON, rtt, errDetail(err))
}

// ioFailure classifies a failed read or write on an established connection
// (what says "timeout" for a layer-4 exchange).
func ioFailure(op string, err error, rtt time.Duration) Result {
	switch {
	case errors.Is(err, context.Canceled):
		return procErr(rtt, "probe canceled")
	case isTimeout(err):
		return down(event.ReasonL4TOUT, rtt, op+" timeout")
	case errors.Is(err, io.EOF):
		return down(event.ReasonL4RSP, rtt, op+": connection closed by peer")
	}
	return down(event.ReasonL4CON, rtt, op+": "+errDetail(err))
}

// isLocalSetup reports whether err is about our own socket (namespace,
// socket(), bind()) rather than about the target.
func isLocalSetup(err error) bool {
	if errors.Is(err, errNetns) {
		return true
	}
	var se *os.SyscallError
	if errors.As(err, &se) && (se.Syscall == "socket" || se.Syscall == "bind" || se.Syscall == "setsockopt") {
		return true
	}
	return errors.Is(err, syscall.EADDRNOTAVAIL) || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE)
}

func isTimeout(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// errDetail is the short text of err: the errno's words when there is one
// ("connection refused"), else the error itself.
func errDetail(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) && !errors.Is(err, errNetns) {
		return errno.Error()
	}
	return err.Error()
}
