//go:build tools

// Package natscli only pins the nats CLI version; see go.mod.
package natscli

import _ "github.com/nats-io/natscli/nats"
