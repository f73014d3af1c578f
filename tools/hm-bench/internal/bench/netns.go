package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// EnvInNetns marks the copy of hm-bench that Reexec started inside its own
// network namespace.
const EnvInNetns = "HM_BENCH_IN_NETNS"

// InNetns reports whether this process is the copy started by Reexec.
func InNetns() bool { return os.Getenv(EnvInNetns) == "1" }

// Reexec runs this program again with args in a new network namespace and
// waits for it; SIGTERM reaches it when ctx ends.
//
// Why a namespace of its own: tens of thousands of short TCP connections a
// second fill the shared connection-tracking table (nf_conntrack keeps a
// closed connection for up to 120 s, and a full table drops packets for
// every process on the machine) and the TIME_WAIT table. In a fresh
// namespace there are no firewall rules, so no connection tracking, and its
// loopback carries only the benchmark's traffic: the measurement is of the
// prober, and other users of the machine are not disturbed.
func Reexec(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("bench: netns: %w", err)
	}
	cmd := exec.CommandContext(ctx, self, args...)
	cmd.Env = append(os.Environ(), EnvInNetns+"=1")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = nil, stdout, stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = time.Minute // it stops its own children first
	if err := cmd.Run(); err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			return exit // it has printed its own error
		}
		return fmt.Errorf("bench: start in a new network namespace (run as root, or pass -netns=false): %w", err)
	}
	return nil
}

// LoopbackUp brings lo up: a new network namespace starts with it down.
// Once up, the whole of 127.0.0.0/8 is local.
func LoopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("bench: loopback up: %w", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return fmt.Errorf("bench: loopback up: %w", err)
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("bench: loopback flags: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("bench: loopback up: %w", err)
	}
	return nil
}
