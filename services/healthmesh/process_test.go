package healthmesh_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/healthmesh/healthmesh/shared/bus"
	"github.com/healthmesh/healthmesh/shared/event"
	"github.com/healthmesh/healthmesh/shared/subject"
)

// buildBinary compiles cmd/healthmesh into a temp dir.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "healthmesh")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/healthmesh")
	cmd.Env = append(cmd.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
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
	cmd, ready, exited := startProcess(t, bin, "-data-dir", dir, "-nats-addr", "127.0.0.1:0",
		"-metric-server-addr", "127.0.0.1:0", "-log-format", "json")
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
	out, err := exec.Command(bin, "-data-dir", "/proc/no-such-dir/hm", "-nats-addr", "off",
		"-metric-server-addr", "127.0.0.1:0", "-log-format", "json").CombinedOutput()
	if err == nil {
		t.Fatal("started with an unwritable data dir")
	}
	if !strings.Contains(string(out), "/proc/no-such-dir/hm") {
		t.Fatalf("error does not name the directory:\n%s", out)
	}
}
