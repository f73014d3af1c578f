package event

// Times are Unix nanoseconds (int64) and durations nanoseconds (int64) on the
// wire: cheap to encode, unambiguous in JSON.

// ProbeResult is one probe of one target by one observer, published on
// hm.result.<part>.<target>.<observer> into HM_RESULTS.
type ProbeResult struct {
	V        int    `msgpack:"v"`
	Target   string `msgpack:"t"`            // target token (subject.TargetID.Token)
	Observer string `msgpack:"o"`            // prober member id
	Node     string `msgpack:"n,omitempty"`  // the prober's node label
	Seq      uint64 `msgpack:"s"`            // per-observer sequence, increasing
	TS       int64  `msgpack:"ts"`           // probe start, Unix ns
	State    State  `msgpack:"st"`           // up, down, or unknown (= probe error, not a verdict)
	Reason   Reason `msgpack:"r"`            // reason code
	RTT      int64  `msgpack:"rtt"`          // round trip / probe duration, ns
	Detail   string `msgpack:"d,omitempty"`  // short human detail ("connection refused", "status 503")
	Interval int64  `msgpack:"iv,omitempty"` // the target interval the prober used, ns
	Rev      uint64 `msgpack:"rev,omitempty"`
}

// Vote is one observer's standing on a target at the time of a transition.
type Vote struct {
	Observer string `msgpack:"o"`
	State    State  `msgpack:"st"`              // the observer's debounced state
	Last     State  `msgpack:"last,omitempty"`  // its last raw result
	Count    int    `msgpack:"n"`               // length of its current streak
	TS       int64  `msgpack:"ts"`              // time of its last result, Unix ns
	Reason   Reason `msgpack:"r,omitempty"`     // reason of its last result
	Stale    bool   `msgpack:"stale,omitempty"` // silent for 3 intervals: does not vote
}

// Quorum records how a target verdict was reached.
type Quorum struct {
	Need      int `msgpack:"k"`    // votes needed
	Observers int `msgpack:"r"`    // observers wanted (R; -1 = all)
	Live      int `msgpack:"live"` // live (non-stale) observers
	Up        int `msgpack:"up"`
	Down      int `msgpack:"down"`
}

// Counts are the children of a VS (backends) or VA (VSs) by state.
type Counts struct {
	Up        int `msgpack:"up"`
	Down      int `msgpack:"down"`
	Unknown   int `msgpack:"unknown"`
	Total     int `msgpack:"total"`
	Unchecked int `msgpack:"unchecked,omitempty"` // VSs that cannot be checked (VA counts only)
}

// ActionSpec is the actioner an event asks for, with its parameters.
type ActionSpec struct {
	Actioner string            `msgpack:"name"`
	Params   map[string]string `msgpack:"params,omitempty"`
	Timeout  int64             `msgpack:"timeout,omitempty"` // action-timeout, ns
	SyncTime int64             `msgpack:"sync,omitempty"`    // action-sync-time, ns
}

// BackendApply is what a backend transition asks the load balancer to do.
type BackendApply struct {
	VIP        string `msgpack:"vip"`
	VPort      uint16 `msgpack:"vport"`
	Proto      string `msgpack:"proto"` // TCP or UDP
	Addr       string `msgpack:"addr"`  // backend address
	Port       uint16 `msgpack:"port"`
	Weight     uint16 `msgpack:"w"`             // weight to set (0 when down)
	UserWeight uint16 `msgpack:"uw"`            // the weight configured by the user
	Inhibited  bool   `msgpack:"inh"`           // inhibited flag to set
	Version    string `msgpack:"ver,omitempty"` // dpvs-agent VS version the decision was made against
	// Listed: the dpvs-agent listing the decision was made against shows the backend with this inhibited flag already, and nothing was applied to it before: the actioner records it without a call (its resync still compares with DPVS).
	Listed bool `msgpack:"listed,omitempty"`
}

// Transition is a change of state of a backend, VS or VA, published on
// hm.event.{backend,vs,va}.… into HM_EVENTS and mirrored in KV hm_state.
type Transition struct {
	V          int           `msgpack:"v"`
	Kind       Kind          `msgpack:"k"`
	Object     string        `msgpack:"obj"`          // DPVS form: backend RIP-PROTO-PORT, VS VIP-PROTO-PORT, VA VIP
	VS         string        `msgpack:"vs,omitempty"` // backend and vs kinds
	VA         string        `msgpack:"va"`
	From       State         `msgpack:"from"`
	To         State         `msgpack:"to"`
	Reason     Reason        `msgpack:"r"`
	Detail     string        `msgpack:"d,omitempty"`
	Gen        uint64        `msgpack:"gen"`             // per-object generation: 1 for the first transition
	TS         int64         `msgpack:"ts"`              // decided at, Unix ns
	Since      int64         `msgpack:"since,omitempty"` // when the previous state began, Unix ns
	Rev        uint64        `msgpack:"rev"`             // configuration revision
	Term       uint64        `msgpack:"term"`            // aggregator leader term (fencing)
	Aggregator string        `msgpack:"agg,omitempty"`   // aggregator instance id
	Target     string        `msgpack:"t,omitempty"`     // target token behind a backend
	ResultSeq  uint64        `msgpack:"rseq,omitempty"`  // HM_RESULTS sequence of the deciding result
	Votes      []Vote        `msgpack:"votes,omitempty"`
	Quorum     *Quorum       `msgpack:"q,omitempty"`
	Counts     *Counts       `msgpack:"c,omitempty"`     // vs: its backends; va: its VSs
	Apply      *BackendApply `msgpack:"apply,omitempty"` // backend: what to set
	Action     *ActionSpec   `msgpack:"act,omitempty"`   // backend: the VS actioner; va: the VA actioner
	Paused     bool          `msgpack:"paused,omitempty"`
}

// ActionResult is the outcome of one action attempt, published on
// hm.action.<kind>.<object> into HM_EVENTS.
type ActionResult struct {
	V        int    `msgpack:"v"`
	Node     string `msgpack:"n"`   // LB node the actioner serves
	Actioner string `msgpack:"a"`   // BackendUpdate, KernelRouteAddDel …
	Kind     Kind   `msgpack:"k"`   // backend (VS actioner) or va
	Object   string `msgpack:"obj"` // VS id for VS actioners, VIP for VA actioners
	Op       string `msgpack:"op"`  // UP, DOWN, APPLY (BackendUpdate), SYNC (re-assertion)
	OK       bool   `msgpack:"ok"`
	Error    string `msgpack:"err,omitempty"`
	Duration int64  `msgpack:"dur"` // ns
	Attempt  int    `msgpack:"att"`
	Items    int    `msgpack:"items,omitempty"` // backends in a coalesced BackendUpdate
	EventSeq uint64 `msgpack:"eseq,omitempty"`  // HM_EVENTS sequence of the (last) triggering event
	TS       int64  `msgpack:"ts"`
	Output   string `msgpack:"out,omitempty"` // bounded script output
}

// AuditRecord is an operator command or configuration event, published on
// hm.audit.<verb> into HM_EVENTS.
type AuditRecord struct {
	V      int    `msgpack:"v"`
	Verb   string `msgpack:"verb"` // pause, resume, config-reload …
	Who    string `msgpack:"who"`
	Why    string `msgpack:"why,omitempty"`
	Object string `msgpack:"obj,omitempty"`
	OK     bool   `msgpack:"ok"`
	Error  string `msgpack:"err,omitempty"`
	Detail string `msgpack:"d,omitempty"`
	Rev    uint64 `msgpack:"rev,omitempty"`
	TS     int64  `msgpack:"ts"`
}

// Target is one probe definition, the value of its key in KV hm_targets.
type Target struct {
	V            int               `msgpack:"v"`
	ID           string            `msgpack:"id"` // target token
	Addr         string            `msgpack:"addr"`
	Port         uint16            `msgpack:"port"`
	Proto        string            `msgpack:"proto"`           // TCP or UDP
	Method       string            `msgpack:"m"`               // none tcp udp ping udpping http
	Params       map[string]string `msgpack:"p,omitempty"`     // method-params as configured
	Interval     int64             `msgpack:"iv"`              // ns
	Timeout      int64             `msgpack:"to"`              // ns
	Observers    int               `msgpack:"obs"`             // R; ObserversAll = one per node
	Jitter       float64           `msgpack:"jit,omitempty"`   // fraction of interval, 0..0.5
	FastInterval int64             `msgpack:"fiv,omitempty"`   // ns, while a state is changing
	DownInterval int64             `msgpack:"div,omitempty"`   // ns, while down
	Source       string            `msgpack:"src,omitempty"`   // source address or go-sockaddr template
	Netns        string            `msgpack:"ns,omitempty"`    // network namespace name to probe from
	CheckAddr    string            `msgpack:"caddr,omitempty"` // probe this address instead of the backend's
	CheckPort    uint16            `msgpack:"cport,omitempty"` // probe this port instead of the backend's
	Rev          uint64            `msgpack:"rev"`             // config revision that last changed it
	UsedBy       []string          `msgpack:"used,omitempty"`  // backend IDs (VS/backend) probed through it
}

// Member is a prober's registration, the value of its key in KV hm_members,
// refreshed every heartbeat.
type Member struct {
	V         int               `msgpack:"v"`
	ID        string            `msgpack:"id"`
	Node      string            `msgpack:"node"`
	Zone      string            `msgpack:"zone,omitempty"`
	Labels    map[string]string `msgpack:"labels,omitempty"`
	Started   int64             `msgpack:"start"`
	Heartbeat int64             `msgpack:"hb"`
	Owned     int               `msgpack:"owned"`
	Version   string            `msgpack:"ver,omitempty"`
	Leaving   bool              `msgpack:"leaving,omitempty"`
}
