package action

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
)

// MaxScriptOutput bounds the combined stdout+stderr a script run keeps.
const MaxScriptOutput = 4 << 10

// outputGrace is how long output is still read after the script exits: a
// child it left running in the background may hold the pipe open forever.
const outputGrace = 100 * time.Millisecond

// Result is the outcome of a run with more to report than an error.
type Result struct {
	ExitCode  int    // -1 when the script did not exit by itself
	Output    string // first MaxScriptOutput bytes of stdout+stderr
	Truncated bool   // the script wrote more than that
}

// Runner is implemented by actioners whose runs have detail worth
// recording even on success (Script's exit status and output). Apply is Run
// without the Result.
type Runner interface {
	Run(ctx context.Context, r Request) (Result, error)
}

// ScriptError is the Err of a failed script run's *Error.
type ScriptError struct {
	Result
	Script   string
	TimedOut bool  // killed, with its process group, at ctx's end
	Err      error // the exit status, ctx's error, or why it did not start
}

func (e *ScriptError) Error() string {
	var b strings.Builder
	b.WriteString("script " + e.Script + ": ")
	if e.TimedOut {
		b.WriteString("killed (with its process group): " + e.Err.Error())
	} else {
		b.WriteString(e.Err.Error())
	}
	if out := strings.TrimSpace(e.Output); out != "" {
		b.WriteString(": output: " + out)
		if e.Truncated {
			b.WriteString(" …")
		}
	}
	return b.String()
}

func (e *ScriptError) Unwrap() error { return e.Err }

// script is the Script actioner. It runs an executable directly, never
// through a shell, with the arguments DPVS passes:
//
//	<args...> UP|DOWN <VIP> [PORT [PROTO]]
//
// PORT and PROTO ("TCP"/"UDP") are given for a VS only. APPLY (a Script used
// as a VS actioner) is passed as UP, as DPVS does; HM_OP tells the truth.
//
// Params: script (required: an existing file with an execute bit; a name
// without '/' is looked up in $PATH once, at New), args (optional: split on
// white space into separate arguments; there is no quoting, and nothing in
// it is interpreted by any shell).
//
// The environment is the actioner's own plus HM_OP, HM_VIP, HM_PORT,
// HM_PROTO (empty for a VA), HM_OBJECT, HM_FROM, HM_TO, HM_REASON (from
// Request.Env, empty when not given) and HM_<K> for any other Env key. The
// script runs in its own process group; at ctx's end (the action-timeout)
// the whole group is killed with SIGKILL. A child the script leaves running
// after a normal exit is left alone (a backgrounded arping is legitimate).
type script struct {
	path string
	args []string
	log  zerolog.Logger
}

func newScript(m map[string]string, deps Deps) (Actioner, error) {
	p := params{name: NameScript, m: m}
	if err := p.only("script", "args"); err != nil {
		return nil, err
	}
	path, err := p.required("script")
	if err != nil {
		return nil, err
	}
	if path, err = resolveScript(path); err != nil {
		return nil, p.errf("script", "%v", err)
	}
	s := &script{path: path, log: deps.Log}
	if _, ok := m["args"]; ok {
		if s.args = strings.Fields(m["args"]); len(s.args) == 0 {
			return nil, p.errf("args", "must not be empty when given")
		}
		if slices.ContainsFunc(s.args, func(a string) bool { return strings.ContainsRune(a, 0) }) {
			return nil, p.errf("args", "contains a NUL byte")
		}
	}
	return s, nil
}

// resolveScript returns the absolute path of an existing executable file.
func resolveScript(path string) (string, error) {
	if !strings.Contains(path, "/") {
		lp, err := exec.LookPath(path)
		if err != nil {
			return "", fmt.Errorf("%q: not found in $PATH", path)
		}
		path = lp
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", fmt.Errorf("%q: %w", path, err)
	}
	fi, err := os.Stat(abs)
	switch {
	case err != nil:
		return "", fmt.Errorf("%q: %w", path, err)
	case !fi.Mode().IsRegular():
		return "", fmt.Errorf("%q: not a regular file", path)
	case fi.Mode().Perm()&0o111 == 0:
		return "", fmt.Errorf("%q: not executable (mode %v)", path, fi.Mode().Perm())
	}
	return abs, nil
}

func (s *script) Apply(ctx context.Context, r Request) error {
	_, err := s.Run(ctx, r)
	return err
}

// Run executes the script once and returns its exit status and output.
func (s *script) Run(ctx context.Context, r Request) (Result, error) {
	res := Result{ExitCode: -1}
	argv, env, err := s.command(r)
	if err != nil {
		return res, fail(NameScript, r, true, err)
	}
	if err := ctx.Err(); err != nil {
		return res, fail(NameScript, r, false, &ScriptError{Result: res, Script: s.path, Err: err})
	}
	res, timedOut, err := s.run(ctx, argv, env)
	key := "va" // the log field naming the object, per the style guide
	if r.Port != 0 {
		key = "vs"
	}
	s.log.Debug().Str(key, r.Object()).Str("script", s.path).Strs("args", argv).
		Int("exit", res.ExitCode).Str("output", res.Output).Msg("script ran")
	if err != nil {
		return res, fail(NameScript, r, false, &ScriptError{Result: res, Script: s.path, TimedOut: timedOut, Err: err})
	}
	return res, nil
}

// command builds the argument vector and environment for r.
func (s *script) command(r Request) (argv, env []string, err error) {
	if r.Op != OpUp && r.Op != OpDown && r.Op != OpApply {
		return nil, nil, fmt.Errorf("%w: op %q (want UP, DOWN or APPLY)", ErrRequest, r.Op)
	}
	if !r.VIP.IsValid() {
		return nil, nil, fmt.Errorf("%w: no VIP", ErrRequest)
	}
	op := string(r.Op)
	if r.Op == OpApply {
		op = string(OpUp)
	}
	argv = append(slices.Clone(s.args), op, vip(r).String())
	proto := ""
	if r.Port != 0 {
		argv = append(argv, portString(r.Port))
		if r.Proto != 0 {
			proto = r.Proto.String()
			argv = append(argv, proto)
		}
	}

	// Later entries win (os/exec keeps the last of duplicate names): the
	// process environment without any HM_* variable (the actioner's own
	// HM_NATS_PASSWORD or HM_NATS_TOKEN must never reach a script, nor a
	// stale HM_REASON), then empty defaults, then Env, then the facts Env
	// cannot override.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "HM_") {
			env = append(env, kv)
		}
	}
	for _, k := range []string{EnvObject, EnvFrom, EnvTo, EnvReason} {
		env = append(env, envName(k)+"=")
	}
	keys := make([]string, 0, len(r.Env))
	for k := range r.Env {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		v := r.Env[k]
		if k == "" || strings.ContainsFunc(k, func(c rune) bool {
			return !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_')
		}) {
			return nil, nil, fmt.Errorf("%w: env key %q: letters, digits and '_' only", ErrRequest, k)
		}
		if strings.ContainsRune(v, 0) {
			return nil, nil, fmt.Errorf("%w: env %q: value contains a NUL byte", ErrRequest, k)
		}
		env = append(env, envName(k)+"="+v)
	}
	env = append(env,
		"HM_OP="+string(r.Op),
		"HM_VIP="+vip(r).String(),
		"HM_PORT="+portString(r.Port),
		"HM_PROTO="+proto,
	)
	return argv, env, nil
}

// envName turns an Env key into its variable: "reason" → "HM_REASON".
func envName(k string) string {
	k = strings.ToUpper(k)
	if strings.HasPrefix(k, "HM_") {
		return k
	}
	return "HM_" + k
}

// run starts the script in its own process group, kills the group at ctx's
// end, and collects the bounded output. It returns when the script has
// exited and the output reader has stopped.
func (s *script) run(ctx context.Context, argv, env []string) (Result, bool, error) {
	res := Result{ExitCode: -1}
	pr, pw, err := os.Pipe()
	if err != nil {
		return res, false, fmt.Errorf("output pipe: %w", err)
	}
	defer pr.Close()
	cmd := exec.Command(s.path, argv...)
	cmd.Env = env
	// An *os.File is handed to the child as is: os/exec starts no copying
	// goroutine, so Wait returns when the script exits, not when the last
	// process holding the pipe does.
	cmd.Stdout, cmd.Stderr = pw, pw
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	err = cmd.Start()
	pw.Close()
	if err != nil {
		return res, false, fmt.Errorf("start: %w", err)
	}

	out := &capped{limit: MaxScriptOutput}
	readDone := make(chan struct{}) // closed by the reader when it stops
	go func() {
		defer close(readDone)
		_, _ = io.Copy(out, pr)
	}()

	pgid := cmd.Process.Pid
	exited := make(chan struct{}) // closed by run after Wait returns
	killed := make(chan bool, 1)  // the watcher's verdict, sent once
	go func() {
		select {
		case <-ctx.Done():
			// Negative pid: the whole group, so children die too.
			_ = unix.Kill(-pgid, unix.SIGKILL)
			killed <- true
		case <-exited:
			killed <- false
		}
	}()
	werr := cmd.Wait()
	close(exited)
	timedOut := <-killed

	grace := time.NewTimer(outputGrace)
	select {
	case <-readDone:
	case <-grace.C:
	}
	grace.Stop()
	pr.Close() // unblocks the reader if a leftover child holds the pipe
	<-readDone

	res.Output, res.Truncated = out.String(), out.dropped
	if cmd.ProcessState != nil && cmd.ProcessState.Exited() {
		res.ExitCode = cmd.ProcessState.ExitCode()
	}
	switch {
	case werr == nil:
		return res, false, nil // exited 0, even if ctx ended at the same moment
	case timedOut:
		return res, true, fmt.Errorf("%w: %v", context.Cause(ctx), werr)
	}
	var ee *exec.ExitError
	if errors.As(werr, &ee) {
		return res, false, fmt.Errorf("exit status %s", exitStatus(ee))
	}
	return res, false, werr
}

func exitStatus(ee *exec.ExitError) string {
	if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return "killed by " + ws.Signal().String()
	}
	return fmt.Sprint(ee.ExitCode())
}

// capped keeps the first limit bytes written to it and discards the rest,
// always reporting success so the script never blocks on a full pipe.
type capped struct {
	limit   int
	buf     []byte
	dropped bool
}

func (c *capped) Write(p []byte) (int, error) {
	keep := p
	if room := c.limit - len(c.buf); len(p) > room {
		keep, c.dropped = p[:max(room, 0)], true
	}
	c.buf = append(c.buf, keep...)
	return len(p), nil
}

func (c *capped) String() string { return string(c.buf) }
