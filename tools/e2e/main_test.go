package e2e

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// mains are the main packages the tests run, relative to the workspace
// root, plus the real nats-server main from the module the project already
// depends on (built, not vendored: no code of ours wraps it).
var mains = []string{
	"./services/healthmesh/cmd/healthmesh",
	"./services/prober/cmd/hm-prober",
	"./services/aggregator/cmd/hm-aggregator",
	"./services/actioner/cmd/hm-actioner",
	"./tools/hmctl",
	"./tools/dpvs-agent-emu",
	"./tools/demo-backends",
	"github.com/nats-io/nats-server/v2",
}

// binDir holds the freshly built binaries; buildErr says why there are none.
// Both are set once by TestMain before any test runs and only read after.
var (
	binDir   string
	buildErr error
)

func TestMain(m *testing.M) {
	flag.Parse()
	if !testing.Short() {
		start := time.Now()
		binDir, buildErr = build()
		if buildErr == nil {
			fmt.Fprintf(os.Stderr, "e2e: built %d binaries in %v\n", len(mains), time.Since(start).Round(time.Millisecond))
		}
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

// build compiles mains into a temporary directory from the workspace root,
// so the tests always run what the checkout says, never a stale bin/.
func build() (string, error) {
	root, err := workspaceRoot()
	if err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp("", "hm-e2e-bin-")
	if err != nil {
		return "", fmt.Errorf("e2e: %w", err)
	}
	args := append([]string{"build", "-o", dir + string(filepath.Separator)}, mains...)
	cmd := exec.Command("go", args...)
	cmd.Dir = root
	// Static like `make build`; the workspace file is named explicitly so a
	// GOWORK=off in the environment cannot hide the service modules.
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOWORK="+filepath.Join(root, "go.work"))
	if out, err := cmd.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("e2e: go build in %s: %w\n%s", root, err, out)
	}
	return dir, nil
}

// workspaceRoot walks up from the working directory to the go.work file.
func workspaceRoot() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("e2e: %w", err)
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return dir, nil
		} else if !errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("e2e: %w", err)
		}
		if filepath.Dir(dir) == dir {
			return "", fmt.Errorf("e2e: no go.work in %s or above", wd)
		}
	}
}

// needBinaries skips in -short mode and fails when the build failed; tests
// call it before they set anything up.
func needBinaries(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("skipping end-to-end test in -short mode")
	}
	if buildErr != nil {
		t.Fatal(buildErr)
	}
}

// bin returns the path of a built binary.
func bin(t *testing.T, name string) string {
	t.Helper()
	needBinaries(t)
	return filepath.Join(binDir, name)
}
