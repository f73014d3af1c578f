package bench

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"time"
)

// userHZ is the unit of utime and stime in /proc/<pid>/stat. The kernel
// exports it as USER_HZ, which is 100 on every Linux architecture Go runs on
// (sysconf(_SC_CLK_TCK) would need cgo to ask).
const userHZ = 100

// ProcSample is what /proc says about one process at one moment.
type ProcSample struct {
	CPU time.Duration // user + system time since the process started
	Sys time.Duration // the system part of CPU
	RSS int64         // resident set, bytes (VmRSS)
	HWM int64         // peak resident set, bytes (VmHWM)
	FDs int           // open file descriptors
}

// sampleProc reads /proc/<pid>/{stat,status,fd}.
func sampleProc(pid int) (ProcSample, error) {
	dir := "/proc/" + strconv.Itoa(pid)
	stat, err := os.ReadFile(dir + "/stat")
	if err != nil {
		return ProcSample{}, fmt.Errorf("bench: pid %d: %w", pid, err)
	}
	var s ProcSample
	if s.CPU, s.Sys, err = parseStatCPU(stat); err != nil {
		return ProcSample{}, fmt.Errorf("bench: pid %d: %w", pid, err)
	}
	status, err := os.ReadFile(dir + "/status")
	if err != nil {
		return ProcSample{}, fmt.Errorf("bench: pid %d: %w", pid, err)
	}
	if s.RSS, err = parseStatusKB(status, "VmRSS"); err != nil {
		return ProcSample{}, fmt.Errorf("bench: pid %d: %w", pid, err)
	}
	if s.HWM, err = parseStatusKB(status, "VmHWM"); err != nil {
		return ProcSample{}, fmt.Errorf("bench: pid %d: %w", pid, err)
	}
	fds, err := os.ReadDir(dir + "/fd")
	if err != nil {
		return ProcSample{}, fmt.Errorf("bench: pid %d: %w", pid, err)
	}
	s.FDs = len(fds)
	return s, nil
}

// parseStatCPU returns utime + stime, and stime, from the content of
// /proc/<pid>/stat. The command name (field 2) is in parentheses and may
// contain spaces and parentheses itself, so fields are counted from the
// last ')'.
func parseStatCPU(stat []byte) (total, sys time.Duration, err error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("stat: no command name in %q", truncate(stat))
	}
	f := bytes.Fields(stat[i+1:])
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	const utime, stime = 14 - 3, 15 - 3
	if len(f) <= stime {
		return 0, 0, fmt.Errorf("stat: %d fields after the command name, want at least %d", len(f), stime+1)
	}
	var ticks [2]uint64
	for j, k := range []int{utime, stime} {
		if ticks[j], err = strconv.ParseUint(string(f[k]), 10, 64); err != nil {
			return 0, 0, fmt.Errorf("stat: field %d: %w", k+3, err)
		}
	}
	tick := func(n uint64) time.Duration { return time.Duration(n) * time.Second / userHZ }
	return tick(ticks[0] + ticks[1]), tick(ticks[1]), nil
}

// parseStatusKB returns the value of a "Key:   123 kB" line of
// /proc/<pid>/status, in bytes.
func parseStatusKB(status []byte, key string) (int64, error) {
	for line := range bytes.Lines(status) {
		k, v, ok := bytes.Cut(line, []byte(":"))
		if !ok || string(k) != key {
			continue
		}
		f := bytes.Fields(v)
		if len(f) != 2 || string(f[1]) != "kB" {
			return 0, fmt.Errorf("status: %s: want \"N kB\", got %q", key, bytes.TrimSpace(v))
		}
		n, err := strconv.ParseInt(string(f[0]), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("status: %s: %w", key, err)
		}
		return n << 10, nil
	}
	return 0, fmt.Errorf("status: no %s line", key)
}

func truncate(b []byte) []byte {
	if len(b) > 80 {
		return b[:80]
	}
	return b
}

// boxCPU is the machine's CPU time so far, from the first line of /proc/stat,
// in ticks: all of it, and what the hypervisor gave other guests while this
// one wanted to run (steal).
type boxCPU struct{ total, steal uint64 }

// sampleBox reads /proc/stat (zeros if unreadable: steal annotates the
// numbers, it is not measured).
func sampleBox() boxCPU {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return boxCPU{}
	}
	c, _ := parseBoxCPU(b)
	return c
}

// parseBoxCPU parses the "cpu  user nice system idle iowait irq softirq
// steal ..." line of /proc/stat.
func parseBoxCPU(stat []byte) (boxCPU, error) {
	line, _, _ := bytes.Cut(stat, []byte("\n"))
	f := bytes.Fields(line)
	if len(f) < 9 || string(f[0]) != "cpu" {
		return boxCPU{}, fmt.Errorf("/proc/stat: first line %q is not the cpu total", truncate(line))
	}
	// Fields 1-8 are user … steal; guest and guest_nice, after them, are
	// already counted in user and nice.
	var c boxCPU
	for i, s := range f[1:9] {
		n, err := strconv.ParseUint(string(s), 10, 64)
		if err != nil {
			return boxCPU{}, fmt.Errorf("/proc/stat: cpu field %d: %w", i+1, err)
		}
		c.total += n
	}
	c.steal, _ = strconv.ParseUint(string(f[8]), 10, 64) // parsed above
	return c, nil
}

// stealPct is the share of the box's CPU time taken by other guests between
// two samples, in percent: a run measured while it is high ran on a
// contended host, and its CPU figures are inflated.
func stealPct(a, b boxCPU) float64 {
	if b.total <= a.total {
		return 0
	}
	return 100 * float64(b.steal-a.steal) / float64(b.total-a.total)
}
