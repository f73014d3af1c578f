package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/healthmesh/healthmesh/shared/wait"
)

// logTail is how much of a process's output a failing test prints.
const logTail = 64 << 10

// stopGrace is how long a process gets to exit after SIGTERM before it is
// killed.
const stopGrace = 10 * time.Second

// proc is one started binary with its output captured, so that a failing
// test can show what every process said.
type proc struct {
	name   string
	cmd    *exec.Cmd
	stdout *logBuf
	stderr *logBuf
	done   chan struct{} // closed by the waiting goroutine once the process has exited
	err    error         // Wait's result; read only after done is closed
}

// logBuf is an io.Writer safe for the exec copier and the test to share.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) Bytes() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return bytes.Clone(l.b.Bytes())
}

// start runs a binary. It is stopped (SIGTERM, then SIGKILL) when the test
// ends, and its output is logged if the test failed.
func start(t *testing.T, name, path string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, cmd: exec.Command(path, args...), stdout: &logBuf{}, stderr: &logBuf{},
		done: make(chan struct{})}
	p.cmd.Env = childEnv()
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.stop(t)
		if t.Failed() {
			p.report(t)
		}
	})
	return p
}

// childEnv is the test's environment without HM_* variables, so a
// developer's HM_NATS_URL cannot point a process at another bus.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "HM_") {
			env = append(env, kv)
		}
	}
	return env
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop asks the process to exit and kills it if it does not in time.
func (p *proc) stop(t *testing.T) {
	if p.exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(stopGrace):
		t.Errorf("%s still running %v after SIGTERM: killed", p.name, stopGrace)
		p.kill()
	}
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *proc) kill() {
	if !p.exited() {
		_ = p.cmd.Process.Kill()
	}
	<-p.done
}

// report logs the tail of the process's output.
func (p *proc) report(t *testing.T) {
	for _, s := range []struct {
		what string
		buf  *logBuf
	}{{"stdout", p.stdout}, {"stderr", p.stderr}} {
		b := s.buf.Bytes()
		if len(b) == 0 {
			continue
		}
		cut := ""
		if len(b) > logTail {
			b, cut = b[len(b)-logTail:], " (last 64 KiB)"
		}
		t.Logf("---- %s %s%s ----\n%s", p.name, s.what, cut, b)
	}
	if p.exited() {
		t.Logf("---- %s exit: %v", p.name, p.err)
	}
}

// waitJSON waits for a JSON line in out whose "message" (zerolog) or "msg"
// is msg and decodes it into v. It fails at once if the process exits.
func (p *proc) waitJSON(t *testing.T, out *logBuf, timeout time.Duration, msg string, v any) {
	t.Helper()
	var line []byte
	found := func() bool {
		sc := bufio.NewScanner(bytes.NewReader(out.Bytes()))
		sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
		for sc.Scan() {
			var m struct {
				Message string `json:"message"`
				Msg     string `json:"msg"`
			}
			if json.Unmarshal(sc.Bytes(), &m) == nil && (m.Message == msg || m.Msg == msg) {
				line = bytes.Clone(sc.Bytes())
				return true
			}
		}
		return false
	}
	wait.Until(timeout, func() bool { return found() || p.exited() })
	if line == nil && !found() {
		if p.exited() {
			t.Fatalf("%s exited before logging %q: %v", p.name, msg, p.err)
		}
		t.Fatalf("%s did not log %q within %v", p.name, msg, timeout)
	}
	if err := json.Unmarshal(line, v); err != nil {
		t.Fatalf("%s: %q line %s: %v", p.name, msg, line, err)
	}
}
