package action

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/healthmesh/healthmesh/shared/subject"
)

// recordScript writes each argument, then the HM_* environment, one per
// line, into the file named by $REC (set through the process environment).
const recordScript = `for a in "$@"; do printf 'arg=%s\n' "$a"; done > "$REC"
env | grep '^HM_' | LC_ALL=C sort >> "$REC"`

func newScriptT(t *testing.T, path, args string) Actioner {
	t.Helper()
	params := map[string]string{"script": path}
	if args != "" {
		params["args"] = args
	}
	a, err := New(NameScript, params, Deps{})
	if err != nil {
		t.Fatalf("New(Script, %v): %v", params, err)
	}
	return a
}

func TestScriptArgsAndEnv(t *testing.T) {
	dir := t.TempDir()
	rec := filepath.Join(dir, "rec")
	t.Setenv("REC", rec)
	t.Setenv("HM_REASON", "stale value inherited from the actioner's environment")
	t.Setenv("HM_NATS_PASSWORD", "secret-that-must-not-reach-scripts")
	t.Setenv("HM_IMAGE_TAG", "any inherited HM_ variable is dropped")
	path := writeScript(t, dir, recordScript)
	vip := netip.MustParseAddr("198.51.100.7")
	tests := []struct {
		name string
		args string
		req  Request
		want []string
	}{
		{
			name: "va_up_with_args",
			args: " dpdk0   lo ",
			req: Request{Op: OpUp, VIP: vip, Env: map[string]string{
				EnvObject: "198.51.100.7", EnvFrom: "down", EnvTo: "up", EnvReason: "AGGR"}},
			want: []string{"arg=dpdk0", "arg=lo", "arg=UP", "arg=198.51.100.7",
				"HM_FROM=down", "HM_OBJECT=198.51.100.7", "HM_OP=UP", "HM_PORT=", "HM_PROTO=",
				"HM_REASON=AGGR", "HM_TO=up", "HM_VIP=198.51.100.7"},
		},
		{
			name: "va_down_no_args_no_env",
			req:  Request{Op: OpDown, VIP: netip.MustParseAddr("2001:db8::7")},
			want: []string{"arg=DOWN", "arg=2001:db8::7",
				"HM_FROM=", "HM_OBJECT=", "HM_OP=DOWN", "HM_PORT=", "HM_PROTO=",
				"HM_REASON=", "HM_TO=", "HM_VIP=2001:db8::7"},
		},
		{
			name: "vs_apply_is_up_with_port_and_proto",
			req: Request{Op: OpApply, VIP: vip, Port: 80, Proto: subject.TCP,
				Env: map[string]string{"HM_OP": "DOWN", "node": "lb1"}},
			want: []string{"arg=UP", "arg=198.51.100.7", "arg=80", "arg=TCP",
				"HM_FROM=", "HM_NODE=lb1", "HM_OBJECT=", "HM_OP=APPLY", "HM_PORT=80", "HM_PROTO=TCP",
				"HM_REASON=", "HM_TO=", "HM_VIP=198.51.100.7"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := newScriptT(t, path, tc.args)
			applyOK(t, a, tc.req)
			b, err := os.ReadFile(rec)
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Split(strings.TrimSpace(string(b)), "\n"); !slices.Equal(got, tc.want) {
				t.Errorf("script saw\n%q\nwant\n%q", got, tc.want)
			}
		})
	}
}

// TestScriptNoInjection: nothing in args, the environment or the script's
// own path is ever interpreted by a shell.
func TestScriptNoInjection(t *testing.T) {
	dir := t.TempDir()
	rec := filepath.Join(dir, "rec")
	t.Setenv("REC", rec)
	mark := filepath.Join(dir, "pwned")
	t.Chdir(dir) // an injected relative "touch pwned" would land in dir
	scriptDir := filepath.Join(dir, "a dir; touch pwned $(touch pwned)")
	if err := os.Mkdir(scriptDir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := writeScript(t, scriptDir, recordScript)
	hostile := []struct {
		name string
		args string
		env  map[string]string
	}{
		{name: "semicolon_in_args", args: "x;touch " + mark},
		{name: "command_substitution_in_args", args: "$(touch " + mark + ") `touch " + mark + "`"},
		{name: "pipe_and_redirect_in_args", args: "|touch " + mark + " >" + mark},
		{name: "command_substitution_in_env", env: map[string]string{EnvReason: "$(touch " + mark + ")", EnvObject: "; touch " + mark}},
	}
	for _, tc := range hostile {
		t.Run(tc.name, func(t *testing.T) {
			a := newScriptT(t, path, tc.args)
			applyOK(t, a, Request{Op: OpUp, VIP: netip.MustParseAddr("198.51.100.7"), Env: tc.env})
			if _, err := os.Stat(mark); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("%s exists (stat: %v): a command was injected", mark, err)
			}
			b, err := os.ReadFile(rec)
			if err != nil {
				t.Fatal(err)
			}
			got := string(b)
			for _, f := range strings.Fields(tc.args) {
				if !strings.Contains(got, "arg="+f+"\n") {
					t.Errorf("argument %q not passed literally; script saw:\n%s", f, got)
				}
			}
			for k, v := range tc.env {
				if !strings.Contains(got, envName(k)+"="+v+"\n") {
					t.Errorf("env %s=%q not passed literally; script saw:\n%s", envName(k), v, got)
				}
			}
		})
	}
}

func TestScriptFailure(t *testing.T) {
	dir := t.TempDir()
	big := strings.Repeat("x", 3*MaxScriptOutput)
	tests := []struct {
		name          string
		body          string
		wantExit      int
		wantOutput    string // prefix
		wantTruncated bool
	}{
		{name: "exit_status_and_stderr", body: "echo out; echo boom >&2; exit 3", wantExit: 3, wantOutput: "out\nboom\n"},
		{name: "output_bounded", body: "printf '%s' " + big + "; printf '%s' " + big + " >&2; exit 1",
			wantExit: 1, wantOutput: big[:MaxScriptOutput], wantTruncated: true},
		{name: "killed_by_signal", body: "echo dying; kill -TERM $$", wantExit: -1, wantOutput: "dying\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sdir := filepath.Join(dir, tc.name)
			if err := os.Mkdir(sdir, 0o755); err != nil {
				t.Fatal(err)
			}
			a := newScriptT(t, writeScript(t, sdir, tc.body), "")
			res, err := a.(Runner).Run(testCtx(t), Request{Op: OpDown, VIP: netip.MustParseAddr("198.51.100.7")})
			var se *ScriptError
			if !errors.As(err, &se) {
				t.Fatalf("Run error = %v, want a *ScriptError", err)
			}
			if IsPermanent(err) {
				t.Errorf("a failed script run is permanent: %v", err)
			}
			if se.ExitCode != tc.wantExit || res.ExitCode != tc.wantExit {
				t.Errorf("exit code %d (result %d), want %d", se.ExitCode, res.ExitCode, tc.wantExit)
			}
			if se.Output != tc.wantOutput || len(se.Output) > MaxScriptOutput {
				t.Errorf("output %q (%d bytes), want %q", clipT(se.Output), len(se.Output), clipT(tc.wantOutput))
			}
			if se.Truncated != tc.wantTruncated {
				t.Errorf("truncated = %v, want %v", se.Truncated, tc.wantTruncated)
			}
			if msg := err.Error(); !strings.Contains(msg, "actioner: Script 198.51.100.7 DOWN: script ") ||
				(tc.wantExit > 0 && !strings.Contains(msg, "exit status "+strconv.Itoa(tc.wantExit))) {
				t.Errorf("error message %q lacks the object or the exit status", clipT(msg))
			}
		})
	}
}

func clipT(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}

// TestScriptKillsProcessGroup: at ctx's end the script and every process it
// started are killed, not just the script.
func TestScriptKillsProcessGroup(t *testing.T) {
	tests := []struct {
		name    string
		ctx     func(t *testing.T, pidFile string) context.Context
		wantErr error
	}{
		{
			name: "deadline",
			ctx: func(t *testing.T, _ string) context.Context {
				c, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
				t.Cleanup(cancel)
				return c
			},
			wantErr: context.DeadlineExceeded,
		},
		{
			// Cancelled only once the child's pid is known, so the child
			// certainly exists when the group is killed.
			name: "cancel_after_child_started",
			ctx: func(t *testing.T, pidFile string) context.Context {
				c, cancel := context.WithCancel(t.Context())
				t.Cleanup(cancel)
				go func() {
					defer cancel()
					waitFor(t.Context(), func() bool { return readPID(pidFile) > 0 })
				}()
				return c
			},
			wantErr: context.Canceled,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			pidFile := filepath.Join(dir, "child.pid")
			// The child sleep would outlive the script if only the script
			// were killed; `exec sleep` keeps the script itself alive too.
			path := writeScript(t, dir, `sleep 300 & echo $! > "$1.tmp" && mv "$1.tmp" "$1"; exec sleep 300`)
			a := newScriptT(t, path, pidFile)
			start := time.Now()
			err := a.Apply(tc.ctx(t, pidFile), Request{Op: OpUp, VIP: netip.MustParseAddr("198.51.100.7")})
			var se *ScriptError
			if !errors.As(err, &se) || !se.TimedOut || !errors.Is(err, tc.wantErr) {
				t.Fatalf("Apply = %v, want a timed-out *ScriptError wrapping %v", err, tc.wantErr)
			}
			if d := time.Since(start); d > 30*time.Second {
				t.Fatalf("Apply took %v after its context ended", d)
			}
			pid := readPID(pidFile)
			if pid <= 0 {
				t.Skip("skipping the child check: the script was killed before it recorded its child (slow machine)")
			}
			c, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			if !waitFor(c, func() bool { return !alive(pid) }) {
				_ = unix.Kill(pid, unix.SIGKILL)
				t.Fatalf("child sleep %d survived the script's timeout", pid)
			}
		})
	}
}

// TestScriptLeftoverChild: a script that exits normally while a child it
// backgrounded still holds its output does not hang the action, and the
// child is left alone.
func TestScriptLeftoverChild(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "child.pid")
	path := writeScript(t, dir, `sleep 300 & echo $! > "$1"; echo done`)
	a := newScriptT(t, path, pidFile)
	start := time.Now()
	res, err := a.(Runner).Run(testCtx(t), Request{Op: OpUp, VIP: netip.MustParseAddr("198.51.100.7")})
	elapsed := time.Since(start)
	pid := readPID(pidFile)
	if pid > 0 {
		defer unix.Kill(pid, unix.SIGKILL)
	}
	if err != nil || res.ExitCode != 0 || res.Output != "done\n" {
		t.Fatalf("Run = %+v, %v; want exit 0 and output \"done\\n\"", res, err)
	}
	if elapsed > 5*time.Second {
		t.Errorf("Run took %v: it waited for the background child", elapsed)
	}
	if pid <= 0 || !alive(pid) {
		t.Errorf("background child %d was killed after a normal exit", pid)
	}
}

func TestScriptBadRequest(t *testing.T) {
	dir := t.TempDir()
	a := newScriptT(t, writeScript(t, dir, "exit 0"), "")
	tests := []struct {
		name string
		req  Request
	}{
		{name: "no_vip", req: Request{Op: OpUp}},
		{name: "unknown_op", req: Request{Op: "SYNC", VIP: netip.MustParseAddr("198.51.100.7")}},
		{name: "env_key_with_equals", req: Request{Op: OpUp, VIP: netip.MustParseAddr("198.51.100.7"), Env: map[string]string{"A=B": "x"}}},
		{name: "env_value_with_nul", req: Request{Op: OpUp, VIP: netip.MustParseAddr("198.51.100.7"), Env: map[string]string{"reason": "a\x00b"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := a.Apply(testCtx(t), tc.req)
			if !errors.Is(err, ErrRequest) || !IsPermanent(err) {
				t.Fatalf("Apply = %v, want a permanent ErrRequest", err)
			}
		})
	}
}

func readPID(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// alive reports whether pid runs; a zombie (killed, not yet reaped by
// whoever inherited it) counts as dead.
func alive(pid int) bool {
	if err := unix.Kill(pid, 0); errors.Is(err, unix.ESRCH) {
		return false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

// waitFor polls cond until it holds or ctx ends.
func waitFor(ctx context.Context, cond func() bool) bool {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			return false
		case <-tick.C:
		}
	}
	return true
}
