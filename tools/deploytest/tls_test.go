package deploytest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/healthmesh/healthmesh/shared/bus"
)

// pki is a test certificate authority writing PEM files into dir.
type pki struct {
	t    *testing.T
	dir  string
	name string
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	CA   string // the CA certificate file
}

// newPKI makes a self-signed CA.
func newPKI(t *testing.T, name string) *pki {
	t.Helper()
	p := &pki{t: t, dir: t.TempDir(), name: name}
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: name + " test CA"},
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	p.cert, p.key, p.CA = p.issue(tmpl, nil, nil, "ca")
	return p
}

// issue signs tmpl with parent (self-signed when nil) and writes
// <file>.pem and <file>-key.pem.
func (p *pki) issue(tmpl, parent *x509.Certificate, parentKey *ecdsa.PrivateKey, file string) (*x509.Certificate, *ecdsa.PrivateKey, string) {
	t := p.t
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		t.Fatal(err)
	}
	tmpl.SerialNumber = serial
	tmpl.NotBefore = time.Now().Add(-time.Hour)
	tmpl.NotAfter = time.Now().Add(24 * time.Hour)
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile := filepath.Join(p.dir, file+".pem")
	write := func(path, typ string, b []byte) {
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(certFile, "CERTIFICATE", der)
	write(filepath.Join(p.dir, file+"-key.pem"), "EC PRIVATE KEY", kder)
	return cert, key, certFile
}

// leaf issues a server (with 127.0.0.1 and localhost) or client
// certificate and returns its certificate and key files.
func (p *pki) leaf(name string, server bool) (cert, key string) {
	tmpl := &x509.Certificate{Subject: pkix.Name{CommonName: name}, KeyUsage: x509.KeyUsageDigitalSignature}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
		tmpl.DNSNames = []string{"localhost"}
	} else {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	_, _, cert = p.issue(tmpl, p.cert, p.key, name)
	return cert, filepath.Join(p.dir, name+"-key.pem")
}

// TestMutualTLS starts the nats-server of deploy/nats/nats-tls.conf with a
// CA and certificates generated here, and connects the way every role does
// (bus.Connect with -nats-ca, -nats-cert, -nats-key and its nkey): that
// works, and each missing or foreign piece is refused.
func TestMutualTLS(t *testing.T) {
	keys := newKeyring(t)
	ca, rogue := newPKI(t, "healthmesh"), newPKI(t, "rogue")
	srvCert, srvKey := ca.leaf("nats", true)
	cliCert, cliKey := ca.leaf("hm-prober", false)
	rogueCert, rogueKey := rogue.leaf("intruder", false)
	t.Setenv("HM_NATS_TLS_CERT", srvCert)
	t.Setenv("HM_NATS_TLS_KEY", srvKey)
	t.Setenv("HM_NATS_TLS_CA", ca.CA)
	s, log := startServer(t, filepath.Join(natsDir(t), "nats-tls.conf"), nil)
	url := strings.Replace(s.ClientURL(), "nats://", "tls://", 1)

	t.Run("trusted_client_certificate_and_nkey", func(t *testing.T) {
		c := connectAs(t, bus.ConnOptions{URLs: url, Name: "prober", NKeyFile: keys.seeds["prober"],
			CAFile: ca.CA, CertFile: cliCert, KeyFile: cliKey})
		if !c.nc.TLSRequired() {
			t.Error("connection is not TLS")
		}
		st, err := c.nc.TLSConnectionState()
		if err != nil || len(st.PeerCertificates) == 0 || st.PeerCertificates[0].Subject.CommonName != "nats" {
			t.Fatalf("TLS state: %v, peer %v; want the server certificate \"nats\"", err, st.PeerCertificates)
		}
		if err := c.nc.Publish("hm.result.0.t.o", nil); err != nil {
			t.Fatal(err)
		}
		if err := c.nc.Flush(); err != nil {
			t.Fatal(err)
		}
	})

	refused := []struct {
		name string
		o    bus.ConnOptions
		want string // in the last connection error
		// in the server's log (TLS 1.3: the client learns of a refused
		// certificate only as a closed connection)
		logged string
	}{
		{"no_client_certificate", bus.ConnOptions{NKeyFile: keys.seeds["prober"], CAFile: ca.CA}, "tls",
			"TLS handshake error: tls: client didn't provide a certificate"},
		// Go's client offers no certificate the server's CA list rules out.
		{"client_certificate_of_another_ca", bus.ConnOptions{NKeyFile: keys.seeds["prober"], CAFile: ca.CA,
			CertFile: rogueCert, KeyFile: rogueKey}, "tls", "TLS handshake error"},
		{"server_not_trusted", bus.ConnOptions{NKeyFile: keys.seeds["prober"], CAFile: rogue.CA,
			CertFile: cliCert, KeyFile: cliKey}, "certificate signed by unknown authority", "TLS handshake error"},
		{"no_nkey", bus.ConnOptions{CAFile: ca.CA, CertFile: cliCert, KeyFile: cliKey}, "authorization violation",
			"authentication error"},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			logged := log.len()
			var mu sync.Mutex
			var last error // the latest failed attempt
			o := tt.o
			o.URLs, o.Name, o.Log = url, tt.name, zerolog.Nop()
			o.Extra = []nats.Option{nats.ReconnectErrHandler(func(_ *nats.Conn, err error) {
				mu.Lock()
				last = err
				mu.Unlock()
			})}
			ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
			defer cancel()
			nc, err := bus.Connect(ctx, o)
			if err == nil {
				nc.Close()
				t.Fatal("connected; want the connection refused")
			}
			mu.Lock()
			defer mu.Unlock()
			if last == nil || !strings.Contains(strings.ToLower(last.Error()), tt.want) {
				t.Errorf("last connection error %v; want one mentioning %q", last, tt.want)
			}
			if got := log.since(logged); !strings.Contains(got, tt.logged) {
				t.Errorf("the server logged no %q, only:\n%s", tt.logged, got)
			}
		})
	}
}

// TestShippedConfigsLoad loads every configuration of deploy/nats the way
// the container does, and checks that a missing variable is named.
func TestShippedConfigsLoad(t *testing.T) {
	newKeyring(t)
	ca := newPKI(t, "healthmesh")
	srvCert, srvKey := ca.leaf("nats", true)
	routes := "[nats://nats-1:6222, nats://nats-2:6222, nats://nats-3:6222]"
	tests := []struct {
		name  string
		file  string
		env   map[string]string
		check func(*testing.T, *server.Options)
		err   string // wanted in the load error; "" = loads
	}{
		{name: "single_server", file: "nats.conf", check: func(t *testing.T, o *server.Options) {
			if !o.JetStream || o.StoreDir != "/data" || o.Port != 4222 {
				t.Errorf("jetstream %v store %q port %d; want JetStream on /data, port 4222", o.JetStream, o.StoreDir, o.Port)
			}
		}},
		{name: "cluster_node", file: "cluster.conf", env: map[string]string{"HM_NATS_NAME": "nats-2", "HM_NATS_ROUTES": routes},
			check: func(t *testing.T, o *server.Options) {
				if o.ServerName != "nats-2" || o.Cluster.Name != "healthmesh" || len(o.Routes) != 3 || o.Cluster.Port != 6222 {
					t.Errorf("server %q cluster %q routes %v port %d; want nats-2 in healthmesh with 3 routes on 6222",
						o.ServerName, o.Cluster.Name, o.Routes, o.Cluster.Port)
				}
			}},
		{name: "mutual_tls", file: "nats-tls.conf",
			env: map[string]string{"HM_NATS_TLS_CERT": srvCert, "HM_NATS_TLS_KEY": srvKey, "HM_NATS_TLS_CA": ca.CA},
			check: func(t *testing.T, o *server.Options) {
				if o.TLSConfig == nil || o.TLSConfig.ClientAuth != tls.RequireAndVerifyClientCert {
					t.Errorf("TLS config %+v; want client certificates required and verified", o.TLSConfig)
				}
			}},
		{name: "cluster_without_routes", file: "cluster.conf", env: map[string]string{"HM_NATS_NAME": "nats-1", "HM_NATS_ROUTES": ""},
			err: "HM_NATS_ROUTES"},
		{name: "missing_user_key", file: "nats.conf", env: map[string]string{"HM_NKEY_PROBER": ""}, err: "HM_NKEY_PROBER"},
		{name: "tls_without_files", file: "nats-tls.conf", env: map[string]string{"HM_NATS_TLS_CERT": ""}, err: "HM_NATS_TLS_CERT"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				if v == "" {
					// t.Setenv restores it afterwards; then unset it here.
					t.Setenv(k, "")
					os.Unsetenv(k)
					continue
				}
				t.Setenv(k, v)
			}
			o, err := server.ProcessConfigFile(filepath.Join(natsDir(t), tt.file))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("load: %v; want an error naming %s", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("load: %v", err)
			}
			if len(o.Nkeys) != len(roles) {
				t.Errorf("%d nkey users; want one per role (%d)", len(o.Nkeys), len(roles))
			}
			for _, u := range o.Nkeys {
				if u.Permissions == nil || u.Permissions.Publish == nil || u.Permissions.Subscribe == nil {
					t.Errorf("user %s has no publish and subscribe permissions", u.Nkey)
				}
			}
			tt.check(t, o)
		})
	}
}
