package gobuild

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRootHasGoWork(t *testing.T) {
	root, err := Root()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.work")); err != nil {
		t.Fatalf("Root() = %s without go.work: %v", root, err)
	}
}

func TestBuild(t *testing.T) {
	tests := []struct {
		name  string
		mains []string
		want  string // binary expected in the directory; "" = an error
		err   string
	}{
		{name: "workspace_command", mains: []string{"./tools/dpvs-agent-emu"}, want: "dpvs-agent-emu"},
		{name: "no_packages", err: "no packages"},
		{name: "missing_package", mains: []string{"./tools/no-such-command"}, err: "go build"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if testing.Short() && tt.want != "" {
				t.Skip("skipping a go build in -short mode")
			}
			dir, err := Build(tt.mains...)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("Build(%q) error %v; want one containing %q", tt.mains, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer os.RemoveAll(dir)
			if fi, err := os.Stat(filepath.Join(dir, tt.want)); err != nil || fi.Mode()&0o111 == 0 {
				t.Fatalf("%s/%s: %v (mode %v); want an executable", dir, tt.want, err, fi)
			}
		})
	}
}
