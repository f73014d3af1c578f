package demo

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net/http"
	"strings"
	"testing"

	"github.com/rs/zerolog"
)

func TestRun(t *testing.T) {
	tests := []struct {
		name      string
		opts      Options
		wantErr   string
		wantReady Ready
	}{
		{name: "with_control", opts: Options{Control: "127.0.0.1:0", Backends: []Spec{
			{Proto: TCP, Addr: "127.0.0.101:0"}, {Proto: HTTP, Addr: "127.0.0.101:0"}, {Proto: UDP, Addr: "127.0.0.101:0"},
		}}, wantReady: Ready{Msg: "demo backends ready", Backends: 3}},
		{name: "without_control", opts: Options{Backends: []Spec{{Proto: UDP, Addr: "127.0.0.102:0"}}},
			wantReady: Ready{Msg: "demo backends ready", Backends: 1}},
		{name: "no_backends", opts: Options{Control: "127.0.0.1:0"}, wantErr: "no backends"},
		{name: "bad_control_address", opts: Options{Control: "127.0.0.1:http-ish", Backends: []Spec{{Proto: TCP, Addr: "127.0.0.103:0"}}},
			wantErr: "control"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			pr, pw := io.Pipe()
			defer pr.Close()
			o := tc.opts
			o.Logger = zerolog.Nop()
			o.Ready = pw
			errc := make(chan error, 1)
			go func() {
				err := Run(ctx, o)
				pw.CloseWithError(errors.New("run returned"))
				errc <- err
			}()
			if tc.wantErr != "" {
				if err := <-errc; err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			got, err := ReadReady(pr)
			if err != nil {
				t.Fatalf("%v (Run: %v)", err, <-errc)
			}
			if tc.opts.Control != "" {
				if got.Control == "" || strings.HasSuffix(got.Control, ":0") {
					t.Fatalf("ready control %q, want the bound address", got.Control)
				}
				resp, err := http.Get("http://" + got.Control + "/backends")
				if err != nil {
					t.Fatal(err)
				}
				var list []Status
				err = json.NewDecoder(resp.Body).Decode(&list)
				resp.Body.Close()
				if err != nil || len(list) != got.Backends {
					t.Fatalf("/backends: %d entries, %v; want %d", len(list), err, got.Backends)
				}
				http.DefaultClient.CloseIdleConnections()
				got.Control = ""
			}
			if got != tc.wantReady {
				t.Fatalf("ready %+v, want %+v", got, tc.wantReady)
			}
			cancel()
			if err := <-errc; err != nil {
				t.Fatalf("Run after cancel: %v", err)
			}
		})
	}
}

func TestReadReady(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    Ready
		wantErr bool
	}{
		{name: "after_log_lines", in: "{\"level\":\"info\",\"message\":\"demo backends ready\"}\nnot json\n" +
			`{"msg":"demo backends ready","backends":7,"control":"127.0.0.1:7000"}` + "\n",
			want: Ready{Msg: ReadyMsg, Backends: 7, Control: "127.0.0.1:7000"}},
		{name: "eof_before_ready", in: `{"msg":"other"}` + "\n", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ReadReady(strings.NewReader(tc.in))
			if tc.wantErr {
				if !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Fatalf("err = %v, want unexpected EOF", err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

func TestRaiseFileLimit(t *testing.T) {
	tests := []struct {
		name     string
		backends int
		wantErr  bool
	}{
		{name: "few", backends: 10},
		{name: "more_than_the_kernel_allows", backends: math.MaxInt32, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := RaiseFileLimit(tc.backends)
			if tc.wantErr {
				if !errors.Is(err, ErrFileLimit) || !strings.Contains(err.Error(), "raise it") {
					t.Fatalf("err = %v, want ErrFileLimit saying how to raise it", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got < uint64(tc.backends)+fdHeadroom {
				t.Fatalf("limit %d, want at least %d", got, tc.backends+fdHeadroom)
			}
		})
	}
}
