package config

import (
	"fmt"
	"maps"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"text/template"
	"time"

	sockaddrtmpl "github.com/hashicorp/go-sockaddr/template"

	"github.com/healthmesh/healthmesh/shared/event"
	"github.com/healthmesh/healthmesh/shared/subject"
)

// Validation runs on the merged configuration. A per-object block is
// checked only where it differs from its parent (a value it inherits was
// checked, and reported, where it is written), except for checks that
// depend on the object itself, such as what auto resolves to.

const globalVSPath = keyGlobal + "/" + keyGlobalVS

func (p *parser) validate(cfg *Config) {
	p.checkVA(join(keyGlobal, keyGlobalVA), cfg.Global.VirtualAddress, defaultVA())
	globalOK := p.checkVS(globalVSPath, cfg.Global.VirtualServer, defaultVS(), nil, true)
	for vip, va := range cfg.VirtualAddresses {
		p.checkVA(join(keyVAs, p.vaKey[vip]), va, cfg.Global.VirtualAddress)
	}
	for id, vs := range cfg.VirtualServers {
		p.checkVS(join(keyVSs, p.vsKey[id]), vs, cfg.Global.VirtualServer, &id, globalOK)
	}
	p.checkServices(cfg, globalOK)
	p.checkBus(cfg.Bus)
	p.checkAgent(cfg)
	p.checkProber(cfg.Prober)
	p.checkAggregator(cfg.Aggregator)
}

// positive reports a duration that must be > 0.
func (p *parser) positive(path string, d time.Duration) {
	if d <= 0 {
		p.errf(path, "must be > 0, got %v", d)
	}
}

func (p *parser) checkVA(path string, c, parent VAConf) {
	if c.ActionTimeout != parent.ActionTimeout {
		p.positive(join(path, "action-timeout"), c.ActionTimeout)
	}
	if c.ActionSyncTime != parent.ActionSyncTime {
		p.positive(join(path, "action-sync-time"), c.ActionSyncTime)
	}
	if c.Actioner != parent.Actioner || !maps.Equal(c.ActionParams, parent.ActionParams) {
		p.checkActioner(path, c.Actioner, c.ActionParams, parent.ActionParams)
	}
}

func (p *parser) checkActioner(path, name string, params, parentParams map[string]string) {
	inherited := ""
	if len(params) > 0 && maps.Equal(params, parentParams) {
		// DPVS's pitfall: a new actioner without params (or with {}) takes
		// the parent's, such as the default {ifname: lo}.
		inherited = " (action-params inherited from the parent block: give this block its own)"
	}
	for _, is := range checkAction(name, params, p.opts.CheckFile) {
		if is.key == "actioner" {
			p.errf(join(path, "actioner"), "%s", is.msg)
			continue
		}
		p.errf(join(join(path, "action-params"), is.key), "%s%s", is.msg, inherited)
	}
}

// checkVS checks a VS block against its parent; id is nil for the global
// block. It reports whether the block's method-params are valid, so that
// blocks inheriting bad params do not repeat the same error.
func (p *parser) checkVS(path string, c, parent VSConf, id *subject.VSID, parentParamsOK bool) bool {
	for _, d := range []struct {
		key       string
		v, parent time.Duration
	}{
		{"interval", c.Interval, parent.Interval},
		{"timeout", c.Timeout, parent.Timeout},
		{"action-timeout", c.ActionTimeout, parent.ActionTimeout},
		{"action-sync-time", c.ActionSyncTime, parent.ActionSyncTime},
	} {
		if d.v != d.parent {
			p.positive(join(path, d.key), d.v)
		}
	}
	if (c.Timeout != parent.Timeout || c.Interval != parent.Interval) && c.Interval > 0 && c.Timeout > c.Interval {
		p.warnf(join(path, "timeout"), "timeout %v is longer than interval %v: the next probe waits for the last one", c.Timeout, c.Interval)
	}
	if c.Actioner != parent.Actioner || !maps.Equal(c.ActionParams, parent.ActionParams) {
		p.checkActioner(path, c.Actioner, c.ActionParams, parent.ActionParams)
		switch c.Actioner {
		case ActionerKernelRoute, ActionerKernelRouteVerdict, ActionerDpvsAddr, ActionerDpvsAddrKernel:
			p.warnf(join(path, "actioner"), "%s acts on a VIP; as a VS actioner it always runs as UP (as in DPVS): VS actioners are meant to be BackendUpdate", c.Actioner)
		}
	}
	ok := p.checkMethod(path, c, parent, id, parentParamsOK)
	p.checkExtensions(path, c, parent)
	return ok
}

func (p *parser) checkMethod(path string, c, parent VSConf, id *subject.VSID, parentParamsOK bool) bool {
	pp := join(path, "method-params")
	if p.has(pp) && !p.has(join(path, "method")) {
		p.warnf(pp, "ignored: without method, a block takes method and method-params from its parent (as in DPVS); set method too")
	}
	own := c.Method != parent.Method || !maps.Equal(c.MethodParams, parent.MethodParams)
	if !own && (c.Method != MethodAuto || id == nil || len(c.MethodParams) == 0 || !parentParamsOK) {
		return parentParamsOK
	}
	m := c.Method
	if m == MethodAuto && id == nil {
		return p.checkAutoParams(pp, c.MethodParams)
	}
	note := ""
	if m == MethodAuto {
		m = m.ResolveAuto(id.Proto)
		note = fmt.Sprintf(" (auto is %s for %s)", m, id.Proto)
	}
	if !own {
		note += " (method-params inherited from " + globalVSPath + ")"
	}
	iss := checkMethodParams(m, c.MethodParams)
	for _, is := range iss {
		p.errf(join(pp, is.key), "%s%s", is.msg, note)
	}
	return len(iss) == 0
}

// checkAutoParams checks the params of auto where the protocol is unknown
// (the global block, which applies to every service dpvs-agent lists):
// an error if no protocol accepts a param, a warning if only one does.
func (p *parser) checkAutoParams(pp string, params map[string]string) bool {
	byProto := map[subject.Proto]map[string]string{}
	for _, proto := range []subject.Proto{subject.TCP, subject.UDP} {
		byProto[proto] = map[string]string{}
		for _, is := range checkMethodParams(MethodAuto.ResolveAuto(proto), params) {
			byProto[proto][is.key] = is.msg
		}
	}
	ok := true
	for _, k := range sortedKeys(params) {
		tcpMsg, tcpBad := byProto[subject.TCP][k]
		udpMsg, udpBad := byProto[subject.UDP][k]
		switch {
		case tcpBad && udpBad:
			ok = false
			p.errf(join(pp, k), "invalid whatever auto resolves to: tcp: %s; udpping: %s", tcpMsg, udpMsg)
		case tcpBad:
			p.warnf(join(pp, k), "TCP services (auto is tcp) will refuse it: %s", tcpMsg)
		case udpBad:
			p.warnf(join(pp, k), "UDP services (auto is udpping) will refuse it: %s", udpMsg)
		}
	}
	return ok
}

func (p *parser) checkExtensions(path string, c, parent VSConf) {
	at := func(key string) string { return join(path, key) }
	for _, d := range []struct {
		key       string
		v, parent time.Duration
	}{
		{"fast-interval", c.FastInterval, parent.FastInterval},
		{"down-interval", c.DownInterval, parent.DownInterval},
	} {
		if d.v != d.parent && d.v < 0 {
			p.errf(at(d.key), "must be > 0, got %v", d.v)
		}
	}
	if c.Jitter != parent.Jitter && (c.Jitter < 0 || c.Jitter > 0.5) {
		p.errf(at("jitter"), "must be a fraction of the interval from 0 to 0.5, got %v", c.Jitter)
	}
	if c.InitialState != parent.InitialState && c.InitialState != event.Unknown && c.InitialState != event.Up && c.InitialState != event.Down {
		p.errf(at("initial-state"), "must be unknown, up or down, got %q", c.InitialState)
	}
	if c.Quorum != parent.Quorum || c.Observers != parent.Observers {
		switch {
		case c.Quorum < 0:
			p.errf(at("quorum"), "must be >= 1 (or left out for a majority), got %d", c.Quorum)
		case c.Observers > 0 && c.Quorum > int(c.Observers):
			p.errf(at("quorum"), "quorum %d is more than observers %d: no verdict could ever be reached", c.Quorum, c.Observers)
		}
	}
	if c.MinUp != parent.MinUp && c.MinUp < 0 {
		p.errf(at("min-up"), "must be >= 0, got %d", c.MinUp)
	}
	if c.MaxDownFraction != parent.MaxDownFraction && (c.MaxDownFraction < 0 || c.MaxDownFraction > 1) {
		p.errf(at("max-down-fraction"), "must be a fraction from 0 to 1, got %v", c.MaxDownFraction)
	}
	if c.Source != parent.Source && c.Source != "" {
		if err := checkSource(c.Source); err != nil {
			p.errf(at("source"), "%v", err)
		}
	}
	if c.Netns != parent.Netns && c.Netns != "" {
		if err := checkNetns(c.Netns); err != nil {
			p.errf(at("netns"), "%v", err)
		}
	}
	if c.CheckAddress != parent.CheckAddress && c.CheckAddress != "" {
		if a, err := netip.ParseAddr(c.CheckAddress); err != nil || a.Zone() != "" {
			p.errf(at("check-address"), "must be an IP address, got %q", c.CheckAddress)
		}
	}
}

// checkSource accepts a literal address or a go-sockaddr template. The
// template is parsed, not run: the addresses it picks belong to the host the
// prober runs on.
func checkSource(s string) error {
	if _, err := netip.ParseAddr(s); err == nil {
		return nil
	}
	if !strings.Contains(s, "{{") {
		return fmt.Errorf("must be an IP address or a go-sockaddr template such as {{ GetPrivateIP }}, got %q", s)
	}
	t := template.New("source").
		Funcs(sockaddrtmpl.SourceFuncs).
		Funcs(sockaddrtmpl.SortFuncs).
		Funcs(sockaddrtmpl.FilterFuncs).
		Funcs(sockaddrtmpl.HelperFuncs)
	if _, err := t.Parse(s); err != nil {
		return fmt.Errorf("not a valid go-sockaddr template: %v", err)
	}
	return nil
}

// checkNetns accepts a name of /var/run/netns (ip netns add NAME).
func checkNetns(s string) error {
	if s == "." || s == ".." || len(s) > 255 || strings.ContainsAny(s, "/\x00") {
		return fmt.Errorf("must be a network namespace name as ip netns lists it, got %q", s)
	}
	return nil
}

func (p *parser) checkServices(cfg *Config, globalOK bool) {
	g := cfg.Global.VirtualServer
	for id, svc := range cfg.Services {
		path := join(keyServices, p.svKey[id])
		if len(svc.Backends) == 0 {
			p.warnf(path, "no backends: the service will be judged down")
		}
		seen := map[subject.BackendID]int{}
		for i, b := range svc.Backends {
			bp := join(join(path, "backends"), strconv.Itoa(i))
			if j, dup := seen[b.ID(id.Proto)]; dup && b.Addr.IsValid() {
				p.errf(bp, "same backend %s as backends/%d", b.ID(id.Proto), j)
			}
			seen[b.ID(id.Proto)] = i
		}
		if _, own := cfg.VirtualServers[id]; own || g.Method != MethodAuto || len(g.MethodParams) == 0 || !globalOK {
			continue
		}
		m := MethodAuto.ResolveAuto(id.Proto)
		for _, is := range checkMethodParams(m, g.MethodParams) {
			p.errf(path, "method-params/%s inherited from %s: %s (auto is %s for %s); give this service a virtual-servers block",
				is.key, globalVSPath, is.msg, m, id.Proto)
		}
	}
}

func (p *parser) checkBus(b Bus) {
	for i, u := range b.URLs {
		up := join(join(keyBus, "urls"), strconv.Itoa(i))
		pu, err := url.Parse(u)
		switch {
		case err != nil:
			p.errf(up, "not a URL: %v", err)
		case pu.Scheme != "nats" && pu.Scheme != "tls" && pu.Scheme != "ws" && pu.Scheme != "wss":
			p.errf(up, "scheme must be nats, tls, ws or wss, got %q", u)
		case pu.Host == "":
			p.errf(up, "no host in %q", u)
		}
	}
	auth := 0
	for _, set := range []bool{b.CredsFile != "", b.NKeyFile != "", b.Token != "", b.User != "" || b.Password != ""} {
		if set {
			auth++
		}
	}
	if auth > 1 {
		p.errf(keyBus, "creds-file, nkey-file, token and user/password are alternatives: set only one")
	}
	if (b.User == "") != (b.Password == "") {
		p.errf(join(keyBus, "user"), "user and password go together")
	}
	files := []struct{ key, path string }{
		{"creds-file", b.CredsFile}, {"nkey-file", b.NKeyFile},
		{"tls/ca-file", b.TLS.CAFile}, {"tls/cert-file", b.TLS.CertFile}, {"tls/key-file", b.TLS.KeyFile},
	}
	for _, f := range files {
		if f.path != "" {
			if err := p.opts.CheckFile(f.path, false); err != nil {
				p.errf(join(keyBus, f.key), "%v", err)
			}
		}
	}
	if (b.TLS.CertFile == "") != (b.TLS.KeyFile == "") {
		p.errf(join(keyBus, "tls"), "cert-file and key-file go together")
	}
	if b.TLS.InsecureSkipVerify {
		p.warnf(join(keyBus, "tls/insecure-skip-verify"), "the server's certificate is not verified")
	}
	if p.has(join(keyBus, "prefix")) {
		if b.Prefix == "" {
			p.errf(join(keyBus, "prefix"), "must not be empty (leave it out for %q)", subject.DefaultPrefix)
		} else if _, err := subject.NewSpace(b.Prefix); err != nil {
			p.errf(join(keyBus, "prefix"), "%v", err)
		}
	}
	if b.Results != ResultsJetStream && b.Results != ResultsCore {
		p.errf(join(keyBus, "results"), "must be %q or %q, got %q", ResultsJetStream, ResultsCore, b.Results)
	}
	p.positive(join(keyBus, "results-max-age"), b.ResultsMaxAge)
	p.positive(join(keyBus, "events-max-age"), b.EventsMaxAge)
	for _, s := range []struct {
		key string
		v   ByteSize
	}{{"results-max-bytes", b.ResultsMaxBytes}, {"events-max-bytes", b.EventsMaxBytes}} {
		if s.v == 0 {
			p.errf(join(keyBus, s.key), `must be > 0 or "unlimited"`)
		}
	}
	if b.Replicas < 1 || b.Replicas > 5 {
		p.errf(join(keyBus, "replicas"), "must be 1..5 (JetStream's limits), got %d", b.Replicas)
	}
	for _, t := range []struct {
		key string
		v   time.Duration
	}{{"member-ttl", b.MemberTTL}, {"leader-ttl", b.LeaderTTL}} {
		if t.v < time.Second {
			p.errf(join(keyBus, t.key), "must be at least 1s (KV TTLs have second granularity), got %v", t.v)
		}
	}
}

func hasScheme(s string) bool { return strings.Contains(s, "://") }

// parseAgentURL parses a dpvs-agent base URL; an empty host is 127.0.0.1.
func parseAgentURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, err
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("scheme must be http or https, got %q", u.Scheme)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("no host:port")
	}
	if u.Hostname() == "" {
		u.Host = net.JoinHostPort("127.0.0.1", u.Port())
	}
	return u, nil
}

func (p *parser) checkAgent(cfg *Config) {
	a := cfg.DPVSAgent
	s := a.Addr
	if !hasScheme(s) {
		s = "http://" + s
	}
	if _, err := parseAgentURL(s); err != nil || a.Addr == "" {
		p.errf(join(keyAgent, "addr"), "must be host:port, :port or http(s)://host:port, got %q", a.Addr)
	}
	p.positive(join(keyAgent, "list-interval"), a.ListInterval)
	p.positive(join(keyAgent, "timeout"), a.Timeout)
	if !a.Enabled && len(cfg.Services) == 0 {
		p.warnf(keyAgent, "dpvs-agent is disabled and there are no services: nothing will be checked")
	}
}

func (p *parser) checkProber(pr Prober) {
	if pr.Concurrency < 1 {
		p.errf(join(keyProber, "concurrency"), "must be >= 1, got %d", pr.Concurrency)
	}
	if pr.Jitter < 0 || pr.Jitter > 0.5 {
		p.errf(join(keyProber, "jitter"), "must be a fraction of the interval from 0 to 0.5, got %v", pr.Jitter)
	}
}

func (p *parser) checkAggregator(a Aggregator) {
	if a.StaleIntervals < 1 {
		p.errf(join(keyAggr, "stale-intervals"), "must be >= 1, got %d", a.StaleIntervals)
	}
	if a.Warmup < 0 {
		p.errf(join(keyAggr, "warmup"), "must be >= 0, got %v", a.Warmup)
	}
	if a.HTTPAddr != "" {
		_, port, err := net.SplitHostPort(a.HTTPAddr)
		if _, perr := strconv.ParseUint(port, 10, 16); err != nil || perr != nil {
			p.errf(join(keyAggr, "http-addr"), "must be host:port or :port (empty: no HTTP server), got %q", a.HTTPAddr)
		}
	}
}
