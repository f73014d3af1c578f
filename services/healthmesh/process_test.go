package healthmesh_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/healthmesh/healthmesh/shared/bus"
	"github.com/healthmesh/healthmesh/shared/event"
	"github.com/healthmesh/healthmesh/shared/subject"
	"github.com/healthmesh/healthmesh/shared/wait"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// buildBinary compiles cmd/healthmesh once per test run.
func buildBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "healthmesh-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "healthmesh")
		cmd := exec.Command("go", "build", "-o", binPath, "./cmd/healthmesh")
		cmd.Env = append(cmd.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// writeConfig writes a config with one static VS whose backend is addr.
func writeConfig(t *testing.T, backend string) string {
	t.Helper()
	host, port, _ := net.SplitHostPort(backend)
	conf := filepath.Join(t.TempDir(), "healthcheck.conf")
	text := fmt.Sprintf(`
global:
  virtual-address: {actioner: Blank}
  virtual-server: {method: tcp, interval: 300ms, timeout: 200ms, actioner: Blank}
dpvs-agent: {enabled: false}
services:
  192.0.2.1-TCP-80:
    backends:
      - {addr: %s, port: %s}
`, host, port)
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return conf
}

type readyLine struct {
	Message  string `json:"message"`
	NATSURL  string `json:"nats_url"`
	HTTPAddr string `json:"http_addr"`
}

// startProcess runs the binary and waits for its "healthmesh ready" log line.
func startProcess(t *testing.T, bin string, args ...string) (*exec.Cmd, readyLine, <-chan error) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan readyLine, 1) // written once by the scanner goroutine
	go func() {
		sc := bufio.NewScanner(stderr)
		sent := false
		for sc.Scan() {
			var l readyLine
			if !sent && json.Unmarshal(sc.Bytes(), &l) == nil && l.Message == "healthmesh ready" {
				ready <- l
				sent = true
			}
		}
	}()
	exited := make(chan error, 1) // one value when the process ends
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			<-exited
		}
	})
	select {
	case l := <-ready:
		return cmd, l, exited
	case err := <-exited:
		t.Fatalf("healthmesh exited before ready: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("healthmesh not ready after 30s")
	}
	return nil, readyLine{}, nil
}

func TestAllInOne_process_serves_bus_and_stops_on_sigterm(t *testing.T) {
	bin := buildBinary(t)
	dir := t.TempDir()
	backend, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { // accept and close: a healthy TCP backend
		for {
			c, err := backend.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	conf := writeConfig(t, backend.Addr().String())
	cmd, ready, exited := startProcess(t, bin, "-config-file", conf, "-data-dir", dir, "-nats-addr", "127.0.0.1:0",
		"-metric-server-addr", "127.0.0.1:0", "-log-format", "json", "-node", "lb1")
	if !strings.HasPrefix(ready.NATSURL, "nats://127.0.0.1:") {
		t.Fatalf("nats url %q", ready.NATSURL)
	}

	nc, err := nats.Connect(ready.NATSURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	l, err := bus.Open(ctx, js, subject.Space{})
	if err != nil {
		t.Fatalf("streams and buckets not found: %v", err)
	}

	va, _ := subject.ParseAddrToken("127_0_0_1")
	tr := &event.Transition{V: event.Version, Kind: event.KindVA, Object: va.String(), VA: va.String(),
		From: event.Unknown, To: event.Up, Reason: event.ReasonAggr, Gen: 1, TS: time.Now().UnixNano()}
	if _, err := bus.Publish(ctx, js, l.Space.EventVA(va), tr); err != nil {
		t.Fatal(err)
	}
	m, err := l.Events.GetLastMsgForSubject(ctx, l.Space.EventVA(va))
	if err != nil {
		t.Fatal(err)
	}
	var got event.Transition
	if err := event.Unmarshal(m.Data, &got); err != nil || got.To != event.Up || got.Object != "127.0.0.1" {
		t.Fatalf("read back %+v, %v", got, err)
	}

	// The roles work together: the backend is probed and judged healthy,
	// then unhealthy once it stops listening.
	statusHas := func(want string) func() bool {
		return func() bool {
			resp, err := http.Get("http://" + ready.HTTPAddr + "/status")
			if err != nil {
				return false
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			return resp.StatusCode == 200 && strings.Contains(string(b), want)
		}
	}
	wait.For(t, 15*time.Second, "backend Healthy in /status", statusHas("-> "+backend.Addr().String()+" "))
	wait.For(t, 15*time.Second, "VIP Healthy in /status", statusHas("Healthy"))
	backend.Close()
	wait.For(t, 10*time.Second, "backend Unhealthy in /status", statusHas("Unhealthy"))

	resp, err := http.Get("http://" + ready.HTTPAddr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || strings.TrimSpace(string(body)) != "ok" {
		t.Fatalf("/healthz: %d %q", resp.StatusCode, body)
	}

	start := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("still running 5s after SIGTERM")
	}
	t.Logf("stopped %v after SIGTERM", time.Since(start))
}

func TestAllInOne_unwritable_data_dir_is_a_clear_error(t *testing.T) {
	bin := buildBinary(t)
	conf := writeConfig(t, "127.0.0.1:1")
	out, err := exec.Command(bin, "-config-file", conf, "-data-dir", "/proc/no-such-dir/hm", "-nats-addr", "off",
		"-metric-server-addr", "127.0.0.1:0", "-log-format", "json").CombinedOutput()
	if err == nil {
		t.Fatal("started with an unwritable data dir")
	}
	if !strings.Contains(string(out), "/proc/no-such-dir/hm") {
		t.Fatalf("error does not name the directory:\n%s", out)
	}
}

func TestAllInOne_invalid_config_is_reported_with_paths(t *testing.T) {
	bin := buildBinary(t)
	conf := filepath.Join(t.TempDir(), "bad.conf")
	os.WriteFile(conf, []byte("global:\n  virtual-server:\n    interval: -1s\n    method: 77\n"), 0o644)
	out, err := exec.Command(bin, "-config-file", conf, "-data-dir", t.TempDir(), "-nats-addr", "off",
		"-metric-server-addr", "127.0.0.1:0", "-log-format", "json").CombinedOutput()
	if err == nil {
		t.Fatal("started with an invalid config")
	}
	for _, want := range []string{"global/virtual-server/interval", "global/virtual-server/method"} {
		if !strings.Contains(string(out), want) {
			t.Fatalf("error does not name %s:\n%s", want, out)
		}
	}
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}
