package bus_test

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/healthmesh/healthmesh/shared/broker"
	"github.com/healthmesh/healthmesh/shared/bus"
	"github.com/healthmesh/healthmesh/shared/natstest"
	"github.com/healthmesh/healthmesh/shared/wait"
)

func TestConnect_reconnects_after_server_restart(t *testing.T) {
	dir := t.TempDir()
	s := natstest.RunServerWith(t, natstest.Options{StoreDir: dir})
	addr := strings.TrimPrefix(s.URL(), "nats://")
	nc, err := bus.Connect(ctx(t), bus.ConnOptions{URLs: s.URL(), Name: "test", Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	s.Shutdown()
	wait.For(t, 5*time.Second, "disconnect", func() bool { return !nc.IsConnected() })
	natstest.RunServerWith(t, natstest.Options{StoreDir: dir, ClientAddr: addr})
	wait.For(t, 10*time.Second, "reconnect", nc.IsConnected)
	if err := nc.Publish("x", nil); err != nil {
		t.Fatal(err)
	}
}

func TestConnect_unreachable_fails_with_context(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	c, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err = bus.Connect(c, bus.ConnOptions{URLs: "nats://user:secret@" + addr, Log: zerolog.Nop()})
	if err == nil {
		t.Fatal("connected to nothing")
	}
	if strings.Contains(err.Error(), "secret") || !strings.Contains(err.Error(), addr) {
		t.Fatalf("error should name the address and hide the password: %v", err)
	}
}

func TestConnect_in_process(t *testing.T) {
	b, err := broker.Start(broker.Options{StoreDir: t.TempDir(), ClientAddr: "off"})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Shutdown()
	if b.ClientURL() != "" {
		t.Fatalf("listener present: %q", b.ClientURL())
	}
	nc, err := bus.Connect(ctx(t), bus.ConnOptions{Extra: []nats.Option{b.InProcess()}, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	nc.Close()
}

func TestBroker_rejects_unwritable_store(t *testing.T) {
	_, err := broker.Start(broker.Options{StoreDir: "/proc/healthmesh-cannot-write"})
	if err == nil || !strings.Contains(err.Error(), "/proc/healthmesh-cannot-write") {
		t.Fatalf("err = %v, want a store dir error naming the path", err)
	}
}
