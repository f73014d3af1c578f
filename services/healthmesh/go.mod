module github.com/healthmesh/healthmesh/services/healthmesh

go 1.26.0

require (
	github.com/healthmesh/healthmesh/services/actioner v0.0.0-00010101000000-000000000000
	github.com/healthmesh/healthmesh/services/aggregator v0.0.0-00010101000000-000000000000
	github.com/healthmesh/healthmesh/services/prober v0.0.0-00010101000000-000000000000
	github.com/healthmesh/healthmesh/shared v0.0.0-00010101000000-000000000000
)

replace (
	github.com/healthmesh/healthmesh/services/actioner => ../actioner
	github.com/healthmesh/healthmesh/services/aggregator => ../aggregator
	github.com/healthmesh/healthmesh/services/prober => ../prober
	github.com/healthmesh/healthmesh/shared => ../../shared
)
