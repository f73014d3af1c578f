// Package config loads, validates and renders healthmesh's configuration
// file: a DPVS healthcheck.conf, read the way DPVS reads it, plus
// healthmesh's own sections. An existing DPVS file works unchanged; an empty
// file is valid and means every default.
//
// # DPVS sections
//
//	global:
//	  virtual-address: VACONF   # every VA without a block of its own
//	  virtual-server:  VSCONF   # every VS without a block of its own
//	virtual-addresses:
//	  "192.0.2.1": VACONF       # key: the VIP
//	virtual-servers:
//	  "192.0.2.1-TCP-80": VSCONF  # key: VIP-PROTO-PORT (TCP or UDP)
//
// VACONF keys and built-in defaults: disable (false), down-policy (2 = allOf;
// 1 = oneOf; the names are accepted too), actioner (KernelRouteAddDel),
// action-timeout (2s), action-sync-time (60s), action-params ({ifname: lo}).
//
// VSCONF keys and defaults: method (10000 = auto), interval (3s), down-retry
// (1), up-retry (1), timeout (2s), method-params (none), actioner
// (BackendUpdate), action-timeout (2s), action-sync-time (15s), action-params
// (none). method is a DPVS number (1 none, 2 tcp, 3 udp, 4 ping, 5 udpping,
// 6 http, 10000 auto) or that name; 65535 (passive) is refused. down-retry N
// means N+1 results in a row change the state; 0 inherits and 999999
// (NoRetry) means the first result does.
//
// Durations are Go durations ("3s", "1m0s"). A bare integer is nanoseconds,
// as in DPVS ("interval: 3" is 3ns); it is accepted with a warning.
//
// Merging (DPVS's rules): the global blocks are merged over the built-in
// defaults, then each per-object block over the merged global block. A zero
// or absent value inherits. disable is never inherited by a per-VA block.
// action-params are inherited only when the block has none, independently of
// actioner. method-params belong to method: a block without method takes its
// parent's method and method-params (its own params are dropped, with a
// warning); a block with method never inherits params. At run time an object
// uses its own block if there is one, else the global block (EffectiveVA,
// EffectiveVS).
//
// Unknown keys in these sections are ignored, as DPVS ignores them, and
// reported as warnings. Keys that are not a VIP or VIP-PROTO-PORT are errors
// (DPVS silently never matched them); keys not in canonical form
// ("2001:0::1", "…-tcp-80") are read in canonical form with a warning,
// because DPVS matches keys as exact strings.
//
// # Extensions to VSCONF
//
// All off by default, all inherited like the DPVS keys:
//
//   - rise / fall: HAProxy's spelling; rise N = N ups in a row (up-retry N-1;
//     rise 1 = 999999), fall N likewise for down-retry. Giving rise and
//     up-retry (or fall and down-retry) in one block is an error.
//   - fast-interval: interval while a state is changing; down-interval:
//     interval while down; jitter: random fraction of the interval, 0..0.5.
//   - initial-state: unknown (default), up or down.
//   - observers: probers per target (1, default: sharding) or "all" (one per
//     node, full mesh); quorum: observers that must agree (default: a
//     majority of the live ones).
//   - min-up: never drain a VS below this many up backends; max-down-fraction:
//     never drain more than this fraction of its backends (0..1; 0 = off).
//   - source: source address, or a go-sockaddr template ("{{ GetPrivateIP }}"),
//     checked for syntax only; netns: network namespace name to probe from;
//     check-address / check-port: probe this address / port instead of the
//     backend's.
//   - weight: weight of a backend whose own weight is unknown: a static
//     backend without weight (else DefaultServiceWeight, 100), or a dpvs-agent
//     backend found inhibited with weight 0 (else DefaultAgentWeight, 1, as
//     DPVS).
//
// # Method params
//
// As DPVS, with its bugs fixed. tcp: send, receive (escapes \xHH \0 \r \n \t
// \\, see DecodeEscapes), proxy-protocol v1|v2. udp and udpping: send,
// receive, proxy-protocol v2. ping: none. none: anything. http: method
// (GET PUT POST HEAD), host, uri, https, tls-verify, proxy (booleans as
// yes/no/true/false), proxy-protocol v1|v2, request-headers
// ("K::V;;K::V"), request, response-codes ("200-299,404"), response (body
// prefix) and response-regex (healthmesh). For auto, params are checked
// against what auto resolves to for the VS's protocol; in the global block,
// where the protocol is unknown, a param neither tcp nor udpping accepts is
// an error and one only one of them accepts is a warning.
//
// # Action params
//
// BackendUpdate: none. KernelRouteAddDel and KernelRouteAddDelVerdict: ifname
// (required), with-route (bool), netns (healthmesh: a name under /run/netns
// or an absolute path; default the actioner's own namespace). DpvsAddrAddDel:
// dpvs-ifname (required). DpvsAddrKernelRouteAddDel: ifname and dpvs-ifname
// (required), with-route (optional, unlike DPVS), netns. Script: script (required; must exist and be
// executable, checked through Options.CheckFile), args. Blank: anything.
//
// # healthmesh sections
//
// Decoded strictly: an unknown key is an error.
//
//	bus:
//	  urls: [nats://127.0.0.1:4222]  # list or comma-separated; empty (default): the
//	                                 # all-in-one runs an embedded server, others use
//	                                 # DefaultBusURL
//	  creds-file: ""  nkey-file: ""  user: ""  password: ""  token: ""   # at most one way
//	  tls: {ca-file: "", cert-file: "", key-file: "", insecure-skip-verify: false}
//	  prefix: hm                     # subject/stream/bucket prefix
//	  results: jetstream             # or core: results on core NATS only, no HM_RESULTS
//	                                 # stream (less CPU and memory; no raw-result replay,
//	                                 # results in flight at a failover are lost)
//	  results-max-age: 1h            # HM_RESULTS retention
//	  results-max-bytes: 1GiB        # bytes, or with a unit (KB MB GB KiB MiB GiB …), or unlimited
//	  events-max-age: 720h           # HM_EVENTS retention (30 days)
//	  events-max-bytes: 4GiB
//	  replicas: 1                    # stream/bucket replicas, 1..5
//	  member-ttl: 3s                 # a silent prober loses its targets after this
//	  leader-ttl: 5s                 # aggregator lease
//	dpvs-agent:
//	  enabled: true                  # poll dpvs-agent for services (DPVS behaviour)
//	  addr: ":8082"                  # host:port, :port (= 127.0.0.1) or http(s)://host:port
//	  list-interval: 15s
//	  timeout: 10s
//	services:                        # static inventory, for users without dpvs-agent
//	  "192.0.2.1-TCP-80":            # VIP-PROTO-PORT; checks and actions come from
//	    backends:                    # virtual-servers (or global) like any other VS
//	      - addr: 127.0.0.1          # required
//	        port: 8080               # default: the service's port
//	        weight: 100              # default: the VS's weight extension, else 100
//	        inhibited: false
//	prober:
//	  concurrency: 1024              # probes in flight per prober
//	  jitter: 0                      # default jitter for targets without their own
//	  node: ""                       # node label; empty: host name
//	  zone: ""
//	aggregator:
//	  stale-intervals: 3             # an observer silent this many intervals stops voting
//	                                 # (and never before member-ttl + (retry+2) intervals: a reshard)
//	  warmup: 0s                     # after taking the lead, hold back Down verdicts this long
//	  http-addr: ":6601"             # /metrics /status /conf /conf/check /healthz; empty: none
//	actioner:
//	  node: ""                       # LB node (durable consumer name); empty: host name
//
// Services from dpvs-agent and from services are merged by the aggregator;
// the VS and VA configuration of a service comes from this file either way.
//
// # Errors
//
// Parse reports every problem of the file at once in a *ValidationError,
// each Issue with its path and line:
//
//	virtual-servers/192.0.2.1-TCP-80/interval: must be > 0, got -1s (line 12)
//
// A value inherited from a parent block is checked where it is written, so
// an error is reported once. Render gives the /conf text and CheckReport the
// /conf/check text of DPVS.
package config
