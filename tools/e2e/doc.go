// Package e2e holds healthmesh's end-to-end tests: the real binaries
// (healthmesh all-in-one, or hm-prober, hm-aggregator and hm-actioner around
// a standalone nats-server) run against dpvs-agent-emu and demo-backends on
// loopback, and the tests assert what the load balancer receives, what the
// events stream records and what hmctl shows.
//
// The tests build every binary they start once per run (TestMain), so they
// never run stale binaries from bin/. `go test -short` skips them.
package e2e
