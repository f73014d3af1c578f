package e2e

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/healthmesh/healthmesh/tools/internal/gobuild"
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
		binDir, buildErr = gobuild.Build(mains...)
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
