package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Redacted replaces secrets (bus password and token) in Render and
// CheckReport output, which are served over HTTP.
const Redacted = "REDACTED"

// downPolicyAnnotation is the second comment line of /conf and /conf/check.
const downPolicyAnnotation = "# VA DownPolicy Annotations: 1-oneOf, 2-allOf"

// The file as rendered: typed map keys become the strings DPVS uses.
type renderFile struct {
	Global           Global                   `yaml:"global"`
	VirtualAddresses map[string]VAConf        `yaml:"virtual-addresses"`
	VirtualServers   map[string]VSConf        `yaml:"virtual-servers"`
	Bus              Bus                      `yaml:"bus"`
	DPVSAgent        DPVSAgent                `yaml:"dpvs-agent"`
	Services         map[string]renderService `yaml:"services"`
	Prober           Prober                   `yaml:"prober"`
	Aggregator       Aggregator               `yaml:"aggregator"`
	Actioner         Actioner                 `yaml:"actioner"`
}

type renderService struct {
	Backends []renderBackend `yaml:"backends"`
}

type renderBackend struct {
	Addr      string `yaml:"addr"`
	Port      uint16 `yaml:"port"`
	Weight    uint16 `yaml:"weight"`
	Inhibited bool   `yaml:"inhibited"`
}

// Render returns what DPVS serves at /conf: the two annotation comment
// lines, a blank line, and the default-merged configuration as YAML
// (methods and down policies as numbers, durations as 1m0s, empty maps as
// {}). Secrets are replaced by Redacted. Parsing the output gives back the
// same configuration (secrets aside).
func Render(cfg *Config) []byte {
	f := renderFile{
		Global:           cfg.Global,
		VirtualAddresses: map[string]VAConf{},
		VirtualServers:   map[string]VSConf{},
		Bus:              cfg.Bus,
		DPVSAgent:        cfg.DPVSAgent,
		Services:         map[string]renderService{},
		Prober:           cfg.Prober,
		Aggregator:       cfg.Aggregator,
		Actioner:         cfg.Actioner,
	}
	for vip, va := range cfg.VirtualAddresses {
		f.VirtualAddresses[vip.String()] = va
	}
	for id, vs := range cfg.VirtualServers {
		f.VirtualServers[id.String()] = vs
	}
	for id, svc := range cfg.Services {
		rs := renderService{Backends: make([]renderBackend, len(svc.Backends))}
		for i, b := range svc.Backends {
			rs.Backends[i] = renderBackend{Addr: b.Addr.String(), Port: b.Port, Weight: b.Weight, Inhibited: b.Inhibited}
		}
		f.Services[id.String()] = rs
	}
	if f.Bus.Password != "" {
		f.Bus.Password = Redacted
	}
	if f.Bus.Token != "" {
		f.Bus.Token = Redacted
	}

	var b bytes.Buffer
	b.WriteString(methodAnnotation() + "\n" + downPolicyAnnotation + "\n\n")
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(f); err != nil {
		// Only our own types are encoded; this cannot happen, but a
		// diagnostic page must not panic.
		fmt.Fprintf(&b, "# render error: %v\n", err)
	}
	_ = enc.Close()
	return b.Bytes()
}

// CheckReport reads and validates the file now, with the default options,
// and returns the text DPVS serves at /conf/check.
func CheckReport(path string) string { return Options{}.CheckReport(path) }

// CheckReport returns the text DPVS serves at /conf/check: "Config File
// <path>: VALID" or "INVALID (File Read Error|Yaml Format Error|Validation
// Error: …)", then — unless the file could not be read — two blank lines,
// "Raw Configs from <path>:", the annotation lines and the file as it is,
// secrets redacted. Warnings, which DPVS does not have, follow the verdict.
func (o Options) CheckReport(path string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Config File %s: ", path)
	data, err := os.ReadFile(path)
	if err != nil {
		fmt.Fprintf(&b, "INVALID (File Read Error: %v)", err)
		return b.String()
	}
	_, warns, err := o.Parse(data, path)
	var (
		verr *ValidationError
		serr *SyntaxError
	)
	switch {
	case errors.As(err, &verr):
		fmt.Fprintf(&b, "INVALID (Validation Error: %v)", verr)
	case errors.As(err, &serr):
		fmt.Fprintf(&b, "INVALID (Yaml Format Error: %v)", serr.Err)
	case err != nil:
		fmt.Fprintf(&b, "INVALID (%v)", err)
	default:
		b.WriteString("VALID")
	}
	for _, w := range warns {
		fmt.Fprintf(&b, "\nwarning: %s", w)
	}
	fmt.Fprintf(&b, "\n\n\nRaw Configs from %s:\n", path)
	b.WriteString(methodAnnotation() + "\n" + downPolicyAnnotation + "\n")
	b.Write(redactRaw(data))
	return b.String()
}

// redactRaw blanks the values of bus/password and bus/token in the raw file.
func redactRaw(data []byte) []byte {
	var root yaml.Node
	if yaml.Unmarshal(data, &root) != nil || len(root.Content) == 0 {
		return data
	}
	var secrets []*yaml.Node
	if bus := child(deref(root.Content[0]), keyBus); bus != nil {
		for _, k := range []string{"password", "token"} {
			if v := child(bus, k); v != nil && v.Kind == yaml.ScalarNode && v.Value != "" {
				secrets = append(secrets, v)
			}
		}
	}
	if len(secrets) == 0 {
		return data
	}
	lines := strings.SplitAfter(string(data), "\n")
	for _, v := range secrets {
		if v.Line < 1 || v.Line > len(lines) || v.Column < 1 {
			continue
		}
		l := lines[v.Line-1]
		start := v.Column - 1
		if start > len(l) {
			continue
		}
		end := scalarEnd(l, start, v)
		lines[v.Line-1] = l[:start] + Redacted + l[end:]
	}
	return []byte(strings.Join(lines, ""))
}

// scalarEnd finds where a scalar written at l[start:] ends on its line.
func scalarEnd(l string, start int, v *yaml.Node) int {
	eol := len(strings.TrimRight(l, "\r\n"))
	switch v.Style {
	case yaml.DoubleQuotedStyle, yaml.SingleQuotedStyle:
		q := l[start]
		for i := start + 1; i < eol; i++ {
			if q == '"' && l[i] == '\\' {
				i++
				continue
			}
			if l[i] == q {
				if q == '\'' && i+1 < eol && l[i+1] == '\'' {
					i++
					continue
				}
				return i + 1
			}
		}
		return eol
	case 0:
		if strings.HasPrefix(l[start:], v.Value) {
			return start + len(v.Value)
		}
	}
	return eol
}

// child returns the value of key in a mapping node.
func child(n *yaml.Node, key string) *yaml.Node {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return deref(n.Content[i+1])
		}
	}
	return nil
}
