package deploytest

import (
	"bufio"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/nats-io/nkeys"
	"go.yaml.in/yaml/v3"

	"github.com/healthmesh/healthmesh/shared/config"
)

// TestComposeFilesAgree checks that the compose stack's files say the same
// thing where they must: the cluster configuration differs from the single
// server's only in bus.replicas, the demo seeds match the public keys the
// nats service gets, and every backend dpvs-agent announces is a demo
// backend's fixed address on the backends network.
func TestComposeFilesAgree(t *testing.T) {
	dir := filepath.Join(root(t), "deploy", "compose")

	t.Run("cluster_config_differs_only_in_replicas", func(t *testing.T) {
		single, _, err := config.Load(filepath.Join(dir, "healthmesh.conf"))
		if err != nil {
			t.Fatal(err)
		}
		cluster, _, err := config.Load(filepath.Join(dir, "healthmesh-cluster.conf"))
		if err != nil {
			t.Fatal(err)
		}
		if single.Bus.Replicas != 1 || cluster.Bus.Replicas != 3 {
			t.Errorf("replicas %d and %d; want 1 (one server) and 3 (cluster)", single.Bus.Replicas, cluster.Bus.Replicas)
		}
		cluster.Bus.Replicas = single.Bus.Replicas
		// Source and Revision name the file; everything else must match.
		single.Source, cluster.Source = "", ""
		single.Revision, cluster.Revision = "", ""
		if !reflect.DeepEqual(single, cluster) {
			t.Errorf("healthmesh-cluster.conf differs from healthmesh.conf in more than bus.replicas:\n%s\n----\n%s",
				config.Render(single), config.Render(cluster))
		}
	})

	t.Run("demo_seeds_match_public_keys", func(t *testing.T) {
		f, err := os.Open(filepath.Join(dir, "nats-keys.env"))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		seen := map[string]bool{}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			k, pub, ok := strings.Cut(strings.TrimSpace(sc.Text()), "=")
			if !ok || strings.HasPrefix(k, "#") {
				continue
			}
			role := strings.ToLower(strings.TrimPrefix(k, "HM_NKEY_"))
			seen[role] = true
			seed, err := os.ReadFile(filepath.Join(dir, "secrets", role+".nk"))
			if err != nil {
				t.Errorf("%s: %v", k, err)
				continue
			}
			kp, err := nkeys.FromSeed([]byte(strings.TrimSpace(string(seed))))
			if err != nil {
				t.Errorf("secrets/%s.nk: %v", role, err)
				continue
			}
			if got, _ := kp.PublicKey(); got != pub {
				t.Errorf("secrets/%s.nk is the seed of %s; nats-keys.env says %s", role, got, pub)
			}
		}
		for _, r := range roles {
			if !seen[r] {
				t.Errorf("nats-keys.env has no HM_NKEY_%s", strings.ToUpper(r))
			}
		}
	})

	t.Run("agent_backends_are_demo_backends", func(t *testing.T) {
		var compose struct {
			Services map[string]struct {
				Networks any `yaml:"networks"`
			} `yaml:"services"`
			Networks map[string]struct {
				IPAM struct {
					Config []struct {
						Subnet string `yaml:"subnet"`
					} `yaml:"config"`
				} `yaml:"ipam"`
			} `yaml:"networks"`
		}
		readYAML(t, filepath.Join(root(t), "docker-compose.yml"), &compose)
		cfg := compose.Networks["backends"].IPAM.Config
		if len(cfg) != 1 {
			t.Fatalf("network backends: %d subnets; want 1", len(cfg))
		}
		subnet, err := netip.ParsePrefix(cfg[0].Subnet)
		if err != nil {
			t.Fatalf("network backends: %v", err)
		}
		fixed := map[netip.Addr]string{} // ipv4_address -> service
		for name, svc := range compose.Services {
			nets, _ := svc.Networks.(map[string]any)
			b, _ := nets["backends"].(map[string]any)
			if s, ok := b["ipv4_address"].(string); ok {
				a, err := netip.ParseAddr(s)
				if err != nil || !subnet.Contains(a) {
					t.Errorf("service %s: ipv4_address %q not in %s", name, s, subnet)
				}
				fixed[a] = name
			}
		}
		var seed struct {
			VIPs []struct {
				Services []struct {
					Backends []struct {
						IP string `yaml:"ip"`
					} `yaml:"backends"`
				} `yaml:"services"`
			} `yaml:"vips"`
		}
		readYAML(t, filepath.Join(dir, "dpvs-agent.yaml"), &seed)
		n := 0
		for _, v := range seed.VIPs {
			for _, s := range v.Services {
				for _, b := range s.Backends {
					n++
					if a, err := netip.ParseAddr(b.IP); err != nil || fixed[a] == "" {
						t.Errorf("dpvs-agent.yaml backend %s is no demo backend's address (%v)", b.IP, fixed)
					}
				}
			}
		}
		if n == 0 {
			t.Error("dpvs-agent.yaml has no backends")
		}
	})
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}
