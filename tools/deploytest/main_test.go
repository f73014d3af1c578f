package deploytest

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/healthmesh/healthmesh/tools/internal/gobuild"
)

// roleMains are the binaries the permission tests run under the shipped
// NATS users, relative to the workspace root.
var roleMains = []string{
	"./services/aggregator/cmd/hm-aggregator",
	"./services/prober/cmd/hm-prober",
	"./services/actioner/cmd/hm-actioner",
	"./tools/hmctl",
}

// binDir holds the binaries TestMain built; buildErr says why there are
// none. Both are written before any test runs and only read after.
var (
	binDir   string
	buildErr error
)

func TestMain(m *testing.M) {
	flag.Parse()
	if !testing.Short() {
		binDir, buildErr = gobuild.Build(roleMains...)
	}
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// repoRoot is the workspace root (the directory of go.work).
func repoRoot() (string, error) { return gobuild.Root() }

// root is repoRoot for a test.
func root(t testing.TB) string {
	t.Helper()
	r, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// bin is the path of a binary TestMain built; it skips in -short mode.
func bin(t *testing.T, name string) string {
	t.Helper()
	if testing.Short() {
		t.Skip("skipping: runs the role binaries (not in -short mode)")
	}
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(binDir, name)
}

// safeBuf is an output buffer the exec copier and the test share.
type safeBuf struct {
	mu sync.Mutex
	b  []byte
}

func (s *safeBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.b = append(s.b, p...)
	return len(p), nil
}

func (s *safeBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return string(s.b)
}

// daemon starts a long-running binary with env added to a clean
// environment (no HM_* of the developer's). It is stopped with SIGTERM (then
// SIGKILL) when the test ends, and its output is logged if the test failed.
func daemon(t *testing.T, env []string, path string, args ...string) {
	t.Helper()
	cmd := exec.Command(path, args...)
	cmd.Env = append(cleanEnv(), env...)
	out := &safeBuf{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", path, err)
	}
	done := make(chan error, 1) // written once by the goroutine below when the process is gone
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		var err error
		select {
		case err = <-done:
		case <-time.After(10 * time.Second):
			t.Errorf("%s ignored SIGTERM for 10s: killed", filepath.Base(path))
			_ = cmd.Process.Kill()
			err = <-done
		}
		if t.Failed() {
			t.Logf("---- %s (exit: %v) ----\n%s", filepath.Base(path), err, out)
		}
	})
}

// command runs a short-lived binary and returns its combined output and
// exit code (-1 when it could not run or was killed at the timeout).
func command(t *testing.T, env []string, timeout time.Duration, path string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(path, args...)
	cmd.Env = append(cleanEnv(), env...)
	cmd.WaitDelay = time.Second
	out := &safeBuf{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", path, err)
	}
	timer := time.AfterFunc(timeout, func() { _ = cmd.Process.Kill() })
	err := cmd.Wait()
	timer.Stop()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return out.String(), 0
	case errors.As(err, &exit) && exit.ExitCode() >= 0:
		return out.String(), exit.ExitCode()
	default:
		return out.String() + "\n" + err.Error(), -1
	}
}

// cleanEnv is the test's environment without HM_* variables, so a
// developer's HM_NATS_URL cannot point a process at another bus.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if len(kv) < 3 || kv[:3] != "HM_" {
			env = append(env, kv)
		}
	}
	return env
}
