// Package gobuild builds the workspace's commands for tests that run the
// real binaries: from the go.work root, static like `make build`, into a
// temporary directory, so that a test never runs a stale bin/.
package gobuild

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// Root walks up from the working directory to the directory holding
// go.work.
func Root() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("gobuild: %w", err)
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return dir, nil
		} else if !errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("gobuild: %w", err)
		}
		if filepath.Dir(dir) == dir {
			return "", fmt.Errorf("gobuild: no go.work in %s or above", wd)
		}
	}
}

// Build compiles the main packages (paths relative to Root, like
// "./tools/hmctl", or module paths) with CGO off into a new temporary
// directory and returns it; the caller removes it. The workspace file is
// named explicitly, so GOWORK=off in the environment cannot hide the
// service modules.
func Build(mains ...string) (string, error) {
	if len(mains) == 0 {
		return "", errors.New("gobuild: no packages to build")
	}
	root, err := Root()
	if err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp("", "hm-test-bin-")
	if err != nil {
		return "", fmt.Errorf("gobuild: %w", err)
	}
	cmd := exec.Command("go", append([]string{"build", "-o", dir + string(filepath.Separator)}, mains...)...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOWORK="+filepath.Join(root, "go.work"))
	if out, err := cmd.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("gobuild: go build in %s: %w\n%s", root, err, out)
	}
	return dir, nil
}
