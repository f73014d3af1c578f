package httpserver_test

import (
	"io"
	"net/http"
	"testing"

	"github.com/rs/zerolog"
	"go.uber.org/goleak"

	"github.com/healthmesh/healthmesh/shared/httpserver"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestServer_serves_and_stops(t *testing.T) {
	s, err := httpserver.Start("127.0.0.1:0", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hi")
	}), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + s.Addr() + "/")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "hi" {
		t.Fatalf("body %q", b)
	}
	http.DefaultClient.CloseIdleConnections()
	s.Stop()
	if s.Err() != nil {
		t.Fatalf("err after Stop: %v", s.Err())
	}
	if _, err := httpserver.Start(s.Addr()+"x", nil, zerolog.Nop()); err == nil {
		t.Fatal("bad address accepted")
	}
}
