package config

import (
	"net/netip"
	"strconv"
	"time"

	"github.com/healthmesh/healthmesh/shared/event"
	"github.com/healthmesh/healthmesh/shared/subject"
)

// Config is a parsed, default-merged and validated configuration file.
// Every block holds its effective values: global blocks are merged with the
// built-in defaults and per-object blocks with the global ones, as DPVS does.
type Config struct {
	Global           Global
	VirtualAddresses map[netip.Addr]VAConf   // per-VIP blocks, keys unmapped, no zone
	VirtualServers   map[subject.VSID]VSConf // per-VS blocks
	Bus              Bus
	DPVSAgent        DPVSAgent
	Services         map[subject.VSID]Service // static inventory
	Prober           Prober
	Aggregator       Aggregator
	Actioner         Actioner

	Source   string // path or name the file was read from
	Revision string // hex SHA-256 of the file content
}

// Global holds the blocks that apply to every VA and VS without a block of
// its own, and from which per-object blocks inherit.
type Global struct {
	VirtualAddress VAConf `yaml:"virtual-address"`
	VirtualServer  VSConf `yaml:"virtual-server"`
}

// VAConf is the configuration of a virtual address (DPVS VACONF).
type VAConf struct {
	Disable        bool              `yaml:"disable"` // never inherited by a per-VA block
	DownPolicy     DownPolicy        `yaml:"down-policy"`
	Actioner       string            `yaml:"actioner"`
	ActionTimeout  time.Duration     `yaml:"action-timeout"`
	ActionSyncTime time.Duration     `yaml:"action-sync-time"`
	ActionParams   map[string]string `yaml:"action-params"` // inherited only when empty
}

// VSConf is the configuration of a virtual service and of the checks of its
// backends (DPVS VSCONF), plus healthmesh's extensions, which are all off
// (zero) by default. A zero field inherits from the parent block.
type VSConf struct {
	Method         Method            `yaml:"method"`
	Interval       time.Duration     `yaml:"interval"`
	DownRetry      uint              `yaml:"down-retry"` // N: N+1 downs in a row; NoRetry: one
	UpRetry        uint              `yaml:"up-retry"`   // N: N+1 ups in a row; NoRetry: one
	Timeout        time.Duration     `yaml:"timeout"`
	MethodParams   map[string]string `yaml:"method-params"` // tied to Method
	Actioner       string            `yaml:"actioner"`
	ActionTimeout  time.Duration     `yaml:"action-timeout"`
	ActionSyncTime time.Duration     `yaml:"action-sync-time"`
	ActionParams   map[string]string `yaml:"action-params"`

	FastInterval    time.Duration `yaml:"fast-interval,omitempty"`     // interval while a state is changing
	DownInterval    time.Duration `yaml:"down-interval,omitempty"`     // interval while down
	Jitter          float64       `yaml:"jitter,omitempty"`            // fraction of the interval, 0..0.5
	InitialState    event.State   `yaml:"initial-state,omitempty"`     // unknown (default), up or down
	Observers       Observers     `yaml:"observers,omitempty"`         // probers per target; ObserversAll = one per node
	Quorum          int           `yaml:"quorum,omitempty"`            // agreeing observers needed; 0 = majority
	MinUp           int           `yaml:"min-up,omitempty"`            // never drain below this many up backends
	MaxDownFraction float64       `yaml:"max-down-fraction,omitempty"` // never drain more than this fraction; 0 = off
	Source          string        `yaml:"source,omitempty"`            // source address or go-sockaddr template
	Netns           string        `yaml:"netns,omitempty"`             // network namespace to probe from
	CheckAddress    string        `yaml:"check-address,omitempty"`     // probe this address instead of the backend's
	CheckPort       uint16        `yaml:"check-port,omitempty"`        // probe this port instead of the backend's
	Weight          uint16        `yaml:"weight,omitempty"`            // weight of a backend whose own weight is unknown
}

// NoRetry in down-retry or up-retry means "no retry": the first result
// changes the state. It is DPVS's spelling, since 0 means "inherit".
const NoRetry uint = 999999

// DownCount is how many down results in a row turn a backend down.
func (c VSConf) DownCount() int { return retryCount(c.DownRetry) }

// UpCount is how many up results in a row turn a backend up.
func (c VSConf) UpCount() int { return retryCount(c.UpRetry) }

func retryCount(r uint) int {
	if r == 0 || r == NoRetry {
		return 1
	}
	return int(r) + 1
}

// DownPolicy decides when a VA is down from the states of its VSs.
type DownPolicy int

// Down policies, numbered as DPVS numbers them.
const (
	OneOf DownPolicy = 1 // down when any one VS is down
	AllOf DownPolicy = 2 // down only when every VS is down
)

// String returns "oneOf" or "allOf" (or "policy<n>").
func (p DownPolicy) String() string {
	switch p {
	case OneOf:
		return "oneOf"
	case AllOf:
		return "allOf"
	}
	return "policy" + strconv.Itoa(int(p))
}

// MarshalYAML writes the DPVS number.
func (p DownPolicy) MarshalYAML() (any, error) { return int(p), nil }

// Observers is how many probers check each target.
type Observers int

// ObserversAll means one observer per prober node (full mesh).
const ObserversAll Observers = event.ObserversAll

// String returns the number, or "all".
func (o Observers) String() string {
	if o == ObserversAll {
		return "all"
	}
	return strconv.Itoa(int(o))
}

// MarshalYAML writes a number, or "all".
func (o Observers) MarshalYAML() (any, error) {
	if o == ObserversAll {
		return "all", nil
	}
	return int(o), nil
}

// ByteSize is a size in bytes. In the file it is an integer or a number with
// a unit (KB MB GB TB, KiB MiB GiB TiB), or "unlimited".
type ByteSize int64

// Unlimited is the ByteSize of "unlimited" (JetStream's -1).
const Unlimited ByteSize = -1

// String returns "unlimited" or the number of bytes.
func (b ByteSize) String() string {
	if b == Unlimited {
		return "unlimited"
	}
	return strconv.FormatInt(int64(b), 10)
}

// MarshalYAML writes the number of bytes, or "unlimited".
func (b ByteSize) MarshalYAML() (any, error) {
	if b == Unlimited {
		return "unlimited", nil
	}
	return int64(b), nil
}

// Bus is how every role reaches NATS, and how the streams and buckets are
// sized.
type Bus struct {
	URLs            []string      `yaml:"urls"` // empty: embedded server (all-in-one) or DefaultBusURL
	CredsFile       string        `yaml:"creds-file"`
	NKeyFile        string        `yaml:"nkey-file"`
	User            string        `yaml:"user"`
	Password        string        `yaml:"password"`
	Token           string        `yaml:"token"`
	TLS             TLS           `yaml:"tls"`
	Prefix          string        `yaml:"prefix"`
	Results         string        `yaml:"results"` // ResultsJetStream (default) or ResultsCore
	ResultsMaxAge   time.Duration `yaml:"results-max-age"`
	ResultsMaxBytes ByteSize      `yaml:"results-max-bytes"`
	EventsMaxAge    time.Duration `yaml:"events-max-age"`
	EventsMaxBytes  ByteSize      `yaml:"events-max-bytes"`
	Replicas        int           `yaml:"replicas"`
	MemberTTL       time.Duration `yaml:"member-ttl"`
	LeaderTTL       time.Duration `yaml:"leader-ttl"`
}

// TLS is the client TLS configuration for NATS.
type TLS struct {
	CAFile             string `yaml:"ca-file"`
	CertFile           string `yaml:"cert-file"`
	KeyFile            string `yaml:"key-file"`
	InsecureSkipVerify bool   `yaml:"insecure-skip-verify"`
}

// Enabled reports whether any TLS setting is present.
func (t TLS) Enabled() bool {
	return t.CAFile != "" || t.CertFile != "" || t.KeyFile != "" || t.InsecureSkipVerify
}

// DPVSAgent is where the service inventory and the DPVS actions go.
type DPVSAgent struct {
	Addr         string        `yaml:"addr"` // host:port, :port or http(s)://host:port
	ListInterval time.Duration `yaml:"list-interval"`
	Timeout      time.Duration `yaml:"timeout"`
	Enabled      bool          `yaml:"enabled"`
}

// URL returns the agent's base URL: http:// is added when no scheme is given
// and an empty host means 127.0.0.1, as DPVS's ":8082" does.
func (a DPVSAgent) URL() string {
	s := a.Addr
	if !hasScheme(s) {
		s = "http://" + s
	}
	if u, err := parseAgentURL(s); err == nil {
		return u.String()
	}
	return s
}

// Service is a statically configured virtual service (for users without
// dpvs-agent). Its checks and actions come from virtual-servers or global.
type Service struct {
	Backends []Backend
}

// Backend is a real server of a static service. Port and Weight are always
// filled in after parsing (see the package documentation for defaults).
type Backend struct {
	Addr      netip.Addr
	Port      uint16
	Weight    uint16
	Inhibited bool
}

// ID returns the backend ID within a VS of protocol p.
func (b Backend) ID(p subject.Proto) subject.BackendID {
	return subject.BackendID{Addr: b.Addr, Proto: p, Port: b.Port}
}

// Prober configures the probing workers.
type Prober struct {
	Concurrency int     `yaml:"concurrency"` // probes in flight per prober
	Jitter      float64 `yaml:"jitter"`      // default jitter for targets without their own
	Node        string  `yaml:"node"`        // node label; empty = host name
	Zone        string  `yaml:"zone"`        // zone label; empty = none
}

// Aggregator configures the aggregator.
type Aggregator struct {
	StaleIntervals int           `yaml:"stale-intervals"` // silent intervals before an observer stops voting
	Warmup         time.Duration `yaml:"warmup"`          // after taking the lead, hold back Down verdicts this long
	HTTPAddr       string        `yaml:"http-addr"`       // /metrics /status /conf /conf/check /healthz
}

// Actioner configures the actioners.
type Actioner struct {
	Node string `yaml:"node"` // LB node this actioner group acts for (durable name); empty = host name
}

// Defaults of healthmesh's own sections. The DPVS defaults are in
// defaultVA and defaultVS.
const (
	DefaultBusURL = "nats://127.0.0.1:4222"
	// ResultsJetStream keeps every probe result in HM_RESULTS (acked
	// publishes, a durable consumer: no result lost on failover, raw
	// results replayable behind a transition); ResultsCore sends them on
	// core NATS only (no stream: less CPU and memory, see bus.ResultsCore).
	ResultsJetStream       = "jetstream"
	ResultsCore            = "core"
	DefaultResultsMaxAge   = time.Hour
	DefaultResultsMaxBytes = ByteSize(1 << 30)
	DefaultEventsMaxAge    = 720 * time.Hour
	DefaultEventsMaxBytes  = ByteSize(4 << 30)
	DefaultReplicas        = 1
	DefaultMemberTTL       = 3 * time.Second
	DefaultLeaderTTL       = 5 * time.Second
	DefaultAgentAddr       = ":8082"
	DefaultListInterval    = 15 * time.Second
	DefaultAgentTimeout    = 10 * time.Second
	DefaultConcurrency     = 1024
	DefaultStaleIntervals  = 3
	DefaultHTTPAddr        = ":6601"
	// DefaultServiceWeight is the weight of a static backend when neither the
	// backend nor its VS's weight says otherwise.
	DefaultServiceWeight uint16 = 100
	// DefaultAgentWeight is the weight restored to a dpvs-agent backend found
	// inhibited with weight 0 when its VS has no weight: DPVS's choice.
	DefaultAgentWeight uint16 = 1
)

// defaultVA is DPVS's built-in VA configuration.
func defaultVA() VAConf {
	return VAConf{
		DownPolicy:     AllOf,
		Actioner:       ActionerKernelRoute,
		ActionTimeout:  2 * time.Second,
		ActionSyncTime: 60 * time.Second,
		ActionParams:   map[string]string{"ifname": "lo"},
	}
}

// defaultVS is DPVS's built-in VS configuration plus the extension defaults
// that are not zero.
func defaultVS() VSConf {
	return VSConf{
		Method:         MethodAuto,
		Interval:       3 * time.Second,
		DownRetry:      1,
		UpRetry:        1,
		Timeout:        2 * time.Second,
		Actioner:       ActionerBackendUpdate,
		ActionTimeout:  2 * time.Second,
		ActionSyncTime: 15 * time.Second,
		InitialState:   event.Unknown,
		Observers:      1,
	}
}

// Default returns the configuration of an empty file: every default.
func Default() *Config {
	c := &Config{
		Global:           Global{VirtualAddress: defaultVA(), VirtualServer: defaultVS()},
		VirtualAddresses: map[netip.Addr]VAConf{},
		VirtualServers:   map[subject.VSID]VSConf{},
		Bus: Bus{
			Prefix:          subject.DefaultPrefix,
			Results:         ResultsJetStream,
			ResultsMaxAge:   DefaultResultsMaxAge,
			ResultsMaxBytes: DefaultResultsMaxBytes,
			EventsMaxAge:    DefaultEventsMaxAge,
			EventsMaxBytes:  DefaultEventsMaxBytes,
			Replicas:        DefaultReplicas,
			MemberTTL:       DefaultMemberTTL,
			LeaderTTL:       DefaultLeaderTTL,
		},
		DPVSAgent: DPVSAgent{
			Addr:         DefaultAgentAddr,
			ListInterval: DefaultListInterval,
			Timeout:      DefaultAgentTimeout,
			Enabled:      true,
		},
		Services:   map[subject.VSID]Service{},
		Prober:     Prober{Concurrency: DefaultConcurrency},
		Aggregator: Aggregator{StaleIntervals: DefaultStaleIntervals, HTTPAddr: DefaultHTTPAddr},
		Revision:   revision(nil),
	}
	return c
}
