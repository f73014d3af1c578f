// Package dpvsagent is a client for the subset of the dpvs-agent REST API
// (basePath /v2) that healthmesh uses: the service inventory, the backend
// health update (BackendUpdate) and the device address calls
// (DpvsAddrAddDel), plus the service and real-server management calls tests
// use to set an agent up. The emulator that serves the same API lives in
// package agenttest.
//
// # Addresses
//
// New accepts "host:port", ":port", "http://host:port" and
// "https://host:port" (unlike DPVS's healthcheck, https is supported). A
// value without a scheme gets "http://"; an empty host (":8082") means
// 127.0.0.1, so ":8082" is "http://127.0.0.1:8082". A path after the host is
// kept as a prefix in front of "/v2".
//
// # Calls
//
//	ListVS(ctx) ([]VirtualServer, error)              GET    /v2/vs
//	GetVS(ctx, vs) (*VirtualServer, error)            GET    /v2/vs/{id}
//	UpdateHealth(ctx, vs, version, items)             PUT    /v2/vs/{id}/rs/health?version=V
//	AddAddr(ctx, ifname, addr) / DelAddr(...)         PUT / DELETE /v2/device/{name}/addr
//	PutVS / DeleteVS                                  PUT / DELETE /v2/vs/{id}
//	PutRS (add or update) / PostRS (replace) / DeleteRS   PUT / POST / DELETE /v2/vs/{id}/rs
//
// The path id of a service is lower(ip)-port-proto with the protocol in lower
// case and IPv6 written raw: "192.168.88.1-80-tcp", "2001::1-53-udp" (see
// PathID).
//
// # Errors
//
// The inventory is never guessed: a non-200 status (204 included), an empty
// body, malformed JSON, a service whose protocol is not TCP or UDP, or whose
// Version or addresses do not parse, is an error, never "zero services"
// (DPVS's healthcheck tore every VIP down on an empty body). Only a real
// empty list ({"Items":[]} or []) is an empty result.
//
// Unexpected statuses are reported as *StatusError, which matches ErrStatus
// with errors.Is (and ErrNotFound when the status is 404); errors.As gives
// the code and body. UpdateHealth returns ErrOutdated with the fresh service
// parsed from the body when the agent answers 270 (the caller's version is
// stale): retry with the returned Version. A body that is not what the call
// expects matches ErrInvalid; an empty one ErrEmpty.
//
// Every call is bounded by the client timeout (WithTimeout, default 10 s) as
// well as by its context.
package dpvsagent
