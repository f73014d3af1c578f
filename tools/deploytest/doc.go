// Package deploytest checks what deploy/ ships, with tests only:
//
//   - the NATS configurations of deploy/nats (single server, 3-node cluster,
//     mutual TLS) load in the nats-server the project builds, and their
//     per-role permissions let every role (hm-aggregator, hm-prober,
//     hm-actioner, hmctl) do its work while refusing what the role must not
//     do: these run on every `make test` (skipped with -short);
//   - the compose stack (docker-compose.yml) survives the fault scenarios of
//     the distributed deployment: prober scaling and loss, aggregator
//     failover, a NATS restart, a network partition under full mesh, an
//     actioner backlog, a prober with stolen credentials. These need Docker
//     and the images of `make images`, and run only with HM_E2E_COMPOSE=1
//     (`make e2e-compose`).
package deploytest
