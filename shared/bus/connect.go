// Package bus connects healthmesh processes to NATS and owns the JetStream
// layout: the HM_RESULTS and HM_EVENTS streams and the hm_targets,
// hm_members, hm_leader and hm_state KV buckets, created idempotently with
// the settings of architecture.md §3, plus publish helpers that set
// Nats-Msg-Id and the readable Hm-* headers.
package bus

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"
)

// ConnOptions says how to reach NATS. Credentials come from files or the
// environment, never from command-line secrets in examples.
type ConnOptions struct {
	URLs      string // comma-separated nats:// URLs
	Name      string // connection name shown by the server (service/node)
	CredsFile string // JWT + nkey .creds file
	NKeyFile  string // nkey seed file
	User      string
	Password  string
	Token     string
	CAFile    string // TLS: CA to verify the server
	CertFile  string // TLS: client certificate (mutual TLS)
	KeyFile   string
	// InsecureSkipVerify disables server certificate checks (tests only).
	InsecureSkipVerify bool
	// Extra options, e.g. nats.InProcessServer for the all-in-one binary.
	Extra []nats.Option
	Log   zerolog.Logger
}

// Connect opens a connection that keeps trying: it retries the first
// connection too (a service started before NATS waits for it), reconnects
// forever with jittered back-off, and logs every state change.
func Connect(ctx context.Context, o ConnOptions) (*nats.Conn, error) {
	urls := o.URLs
	if urls == "" && len(o.Extra) == 0 {
		urls = nats.DefaultURL
	}
	opts := []nats.Option{
		nats.Name(o.Name),
		nats.MaxReconnects(-1),
		nats.RetryOnFailedConnect(true),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.ReconnectJitter(250*time.Millisecond, time.Second),
		nats.ReconnectBufSize(32 << 20),
		nats.PingInterval(10 * time.Second),
		nats.MaxPingsOutstanding(3),
		nats.Timeout(5 * time.Second),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			o.Log.Warn().Err(err).Msg("nats disconnected")
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			o.Log.Info().Str("url", nc.ConnectedUrlRedacted()).Msg("nats reconnected")
		}),
		nats.ClosedHandler(func(*nats.Conn) { o.Log.Debug().Msg("nats connection closed") }),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			ev := o.Log.Warn().Err(err)
			if sub != nil {
				ev = ev.Str("subject", sub.Subject)
			}
			ev.Msg("nats async error")
		}),
	}
	switch {
	case o.CredsFile != "":
		opts = append(opts, nats.UserCredentials(o.CredsFile))
	case o.NKeyFile != "":
		opt, err := nats.NkeyOptionFromSeed(o.NKeyFile)
		if err != nil {
			return nil, fmt.Errorf("bus: nkey file %s: %w", o.NKeyFile, err)
		}
		opts = append(opts, opt)
	case o.User != "":
		opts = append(opts, nats.UserInfo(o.User, o.Password))
	case o.Token != "":
		opts = append(opts, nats.Token(o.Token))
	}
	if o.CAFile != "" {
		opts = append(opts, nats.RootCAs(o.CAFile))
	}
	if o.CertFile != "" || o.KeyFile != "" {
		if o.CertFile == "" || o.KeyFile == "" {
			return nil, errors.New("bus: TLS client certificate needs both cert and key files")
		}
		opts = append(opts, nats.ClientCert(o.CertFile, o.KeyFile))
	}
	if o.InsecureSkipVerify {
		opts = append(opts, func(no *nats.Options) error {
			no.Secure = true
			if no.TLSConfig == nil {
				no.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
			}
			no.TLSConfig.InsecureSkipVerify = true
			return nil
		})
	}
	opts = append(opts, o.Extra...)
	nc, err := nats.Connect(strings.TrimSpace(urls), opts...)
	if err != nil {
		return nil, fmt.Errorf("bus: connect %s: %w", redact(urls), err)
	}
	// With RetryOnFailedConnect the call returns at once; wait (bounded by
	// ctx) so the caller learns early when NATS is unreachable, but keep the
	// connection: it goes on retrying if the caller chooses to proceed.
	for !nc.IsConnected() {
		select {
		case <-ctx.Done():
			nc.Close()
			return nil, fmt.Errorf("bus: connect %s: %w", redact(urls), ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nc, nil
}

// redact hides passwords embedded in URLs for error messages.
func redact(urls string) string {
	parts := strings.Split(urls, ",")
	for i, u := range parts {
		if at := strings.LastIndex(u, "@"); at >= 0 {
			if s := strings.Index(u, "://"); s >= 0 && s < at {
				parts[i] = u[:s+3] + "***" + u[at:]
			}
		}
	}
	return strings.Join(parts, ",")
}
