package demo

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// ErrFileLimit is returned when the process cannot open enough descriptors
// for the backends it was asked to serve.
var ErrFileLimit = errors.New("open file limit too low")

// fdHeadroom is what a farm needs beside one descriptor per backend: the
// control API, stdio, the Go runtime's poller and the probes' connections.
const fdHeadroom = 256

// RaiseFileLimit lifts RLIMIT_NOFILE's soft limit to the hard limit, and the
// hard limit too when that is not enough for backends plus headroom and the
// process may (CAP_SYS_RESOURCE; up to fs.nr_open). It returns the soft
// limit in force and wraps ErrFileLimit, saying how to fix it, when that is
// still too low.
func RaiseFileLimit(backends int) (uint64, error) {
	need := uint64(backends) + fdHeadroom
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("demo: getrlimit nofile: %w", err)
	}
	var raiseErr error
	if lim.Max < need {
		want := syscall.Rlimit{Cur: need, Max: need}
		if n, ok := nrOpen(); ok && want.Max > n {
			want = syscall.Rlimit{Cur: n, Max: n}
		}
		if raiseErr = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want); raiseErr == nil {
			lim = want
		}
	}
	if lim.Cur < lim.Max {
		up := syscall.Rlimit{Cur: lim.Max, Max: lim.Max}
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &up); err != nil {
			return lim.Cur, fmt.Errorf("demo: setrlimit nofile %d: %w", lim.Max, err)
		}
		lim = up
	}
	if lim.Cur < need {
		why := ""
		if raiseErr != nil {
			why = fmt.Sprintf(" and raising it failed (%v)", raiseErr)
		}
		return lim.Cur, fmt.Errorf("demo: %w: %d backends need about %d open files, the limit is %d%s: "+
			"raise it (ulimit -Hn, systemd LimitNOFILE=, docker --ulimit nofile=) or serve fewer backends",
			ErrFileLimit, backends, need, lim.Cur, why)
	}
	return lim.Cur, nil
}

// nrOpen is the kernel's ceiling for RLIMIT_NOFILE.
func nrOpen() (uint64, bool) {
	b, err := os.ReadFile("/proc/sys/fs/nr_open")
	if err != nil {
		return 0, false
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	return n, err == nil
}
