package bus

import (
	"flag"
	"os"
)

// Environment variables read by RegisterFlags. Secrets (password, token) are
// accepted only from the environment or files, never as flags, so they do not
// show up in process listings or shell history.
const (
	EnvURL      = "HM_NATS_URL"
	EnvCreds    = "HM_NATS_CREDS"
	EnvNKey     = "HM_NATS_NKEY"
	EnvUser     = "HM_NATS_USER"
	EnvPassword = "HM_NATS_PASSWORD"
	EnvToken    = "HM_NATS_TOKEN"
	EnvCA       = "HM_NATS_CA"
	EnvCert     = "HM_NATS_CERT"
	EnvKey      = "HM_NATS_KEY"
)

// RegisterFlags adds the shared -nats-* flags to fs, with defaults from the
// environment. Call ApplyEnvSecrets after parsing.
func (o *ConnOptions) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.URLs, "nats-url", envOr(EnvURL, "nats://127.0.0.1:4222"), "NATS server URLs, comma-separated (env "+EnvURL+")")
	fs.StringVar(&o.CredsFile, "nats-creds", os.Getenv(EnvCreds), "NATS credentials (.creds) file (env "+EnvCreds+")")
	fs.StringVar(&o.NKeyFile, "nats-nkey", os.Getenv(EnvNKey), "NATS nkey seed file (env "+EnvNKey+")")
	fs.StringVar(&o.User, "nats-user", os.Getenv(EnvUser), "NATS user; the password comes from env "+EnvPassword)
	fs.StringVar(&o.CAFile, "nats-ca", os.Getenv(EnvCA), "CA file to verify the NATS server's TLS certificate (env "+EnvCA+")")
	fs.StringVar(&o.CertFile, "nats-cert", os.Getenv(EnvCert), "client TLS certificate for NATS (env "+EnvCert+")")
	fs.StringVar(&o.KeyFile, "nats-key", os.Getenv(EnvKey), "client TLS key for NATS (env "+EnvKey+")")
	fs.BoolVar(&o.InsecureSkipVerify, "nats-tls-insecure", false, "do not verify the NATS server certificate (testing only)")
}

// ApplyEnvSecrets reads the password and token from the environment.
func (o *ConnOptions) ApplyEnvSecrets() {
	if o.Password == "" {
		o.Password = os.Getenv(EnvPassword)
	}
	if o.Token == "" {
		o.Token = os.Getenv(EnvToken)
	}
}

func envOr(k, d string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return d
}
