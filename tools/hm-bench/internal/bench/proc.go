package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// proc is a child process: its stdout and stderr go to files in the run
// directory, and it is killed if the benchmark dies (Pdeathsig).
type proc struct {
	name   string
	cmd    *exec.Cmd
	stdout string        // path of the stdout file
	stderr string        // path of the stderr file
	done   chan struct{} // closed by the waiting goroutine once the process is reaped
	killed bool          // killed on purpose (kill): its exit is expected
	err    error         // Wait's error; read after done
}

// startProc starts bin with args and, beside this process's environment,
// env (KEY=VALUE). The caller must call stop.
func startProc(name, dir, bin string, env []string, args ...string) (*proc, error) {
	p := &proc{name: name, stdout: filepath.Join(dir, name+".stdout"), stderr: filepath.Join(dir, name+".log"),
		done: make(chan struct{})}
	out, err := os.Create(p.stdout)
	if err != nil {
		return nil, fmt.Errorf("bench: %s: %w", name, err)
	}
	defer out.Close()
	errf, err := os.Create(p.stderr)
	if err != nil {
		return nil, fmt.Errorf("bench: %s: %w", name, err)
	}
	defer errf.Close()
	p.cmd = exec.Command(bin, args...)
	p.cmd.Dir = dir
	if len(env) > 0 {
		p.cmd.Env = append(os.Environ(), env...)
	}
	p.cmd.Stdout, p.cmd.Stderr = out, errf
	// Pdeathsig: a benchmark killed by SIGKILL leaves no process behind.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("bench: start %s: %w", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// exited reports whether the process has ended (it should not, mid-run).
func (p *proc) exited() error {
	select {
	case <-p.done:
		return fmt.Errorf("bench: %s exited early (%v); see %s", p.name, p.err, p.stderr)
	default:
		return nil
	}
}

// kill ends the process with SIGKILL, as a crash would, and reaps it.
func (p *proc) kill() {
	p.killed = true
	_ = p.cmd.Process.Kill()
	<-p.done
}

// stop sends SIGTERM, waits up to grace, then kills. It returns once the
// process is reaped.
func (p *proc) stop(grace time.Duration) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.done:
	case <-t.C:
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// waitFor polls cond every 50 ms until it returns true, an error, ctx ends or
// timeout passes; what names the condition in the error.
func waitFor(ctx context.Context, timeout time.Duration, what string, cond func() (bool, error)) error {
	return waitEvery(ctx, 50*time.Millisecond, timeout, what, cond)
}

// waitEvery is waitFor polling every period: for conditions that are costly
// to read (the emulator's whole state), so that polling does not load the
// machine being measured.
func waitEvery(ctx context.Context, period, timeout time.Duration, what string, cond func() (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(period)
	defer tick.Stop()
	for {
		ok, err := cond()
		if err != nil {
			return fmt.Errorf("bench: waiting for %s: %w", what, err)
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("bench: waiting for %s: %w", what, ctx.Err())
		case <-tick.C:
		}
	}
}

// logValue returns the string field key of the first JSON log line of path
// whose message is msg ("" when there is none yet).
func logValue(path, msg, key string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var line map[string]any
		if json.Unmarshal(sc.Bytes(), &line) != nil {
			continue
		}
		if line["message"] != msg && line["msg"] != msg {
			continue
		}
		if v, ok := line[key].(string); ok {
			return v, nil
		}
	}
	return "", sc.Err()
}

// natsPorts reads the client URL nats-server wrote to its ports file
// (--ports_file_dir dir): {"nats":["nats://127.0.0.1:PORT"], ...}.
func natsPorts(dir string, pid int) (string, error) {
	// The file is named <executable>_<pid>.ports.
	files, err := filepath.Glob(filepath.Join(dir, fmt.Sprintf("*_%d.ports", pid)))
	if err != nil || len(files) == 0 {
		return "", err
	}
	b, err := os.ReadFile(files[0])
	if err != nil {
		return "", err
	}
	var ports struct {
		Nats []string `json:"nats"`
	}
	if err := json.Unmarshal(b, &ports); err != nil {
		return "", nil // written but not complete yet
	}
	if len(ports.Nats) == 0 {
		return "", errors.New("ports file lists no client URL")
	}
	return ports.Nats[0], nil
}
