package demo

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/rs/zerolog"
)

// ReadyMsg is the "msg" of the line Run prints once every backend is up.
const ReadyMsg = "demo backends ready"

// Ready is the line Run prints once every backend is up and the control API
// listens: {"msg":"demo backends ready","backends":N,"control":"127.0.0.1:7000"}.
type Ready struct {
	Msg      string `json:"msg"`
	Backends int    `json:"backends"`
	Control  string `json:"control"` // bound address; empty without a control API
}

// ReadReady reads r (the stdout of demo-backends) up to the Ready line and
// returns it, so a test or script that started the process knows when to
// probe and where the control API is. Other lines are skipped.
func ReadReady(r io.Reader) (Ready, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		var rd Ready
		if json.Unmarshal(sc.Bytes(), &rd) == nil && rd.Msg == ReadyMsg {
			return rd, nil
		}
	}
	err := sc.Err()
	if err == nil {
		err = io.ErrUnexpectedEOF
	}
	return Ready{}, fmt.Errorf("demo: no ready line: %w", err)
}

// Options configures Run.
type Options struct {
	Backends []Spec
	Control  string         // address of the control API; empty for none
	Logger   zerolog.Logger // where the farm logs
	Ready    io.Writer      // gets the Ready line as JSON; nil for none
}

// Run raises the open file limit, starts the backends and the control API,
// prints the Ready line, and serves until ctx is done.
func Run(ctx context.Context, o Options) error {
	if len(o.Backends) == 0 {
		return errors.New("demo: no backends")
	}
	limit, err := RaiseFileLimit(len(o.Backends))
	if err != nil {
		return err
	}
	start := time.Now()
	f, err := Start(ctx, o.Logger, o.Backends)
	if err != nil {
		return err
	}
	defer f.Close()

	ready := Ready{Msg: ReadyMsg, Backends: f.Len()}
	var (
		srv  *http.Server
		errc = make(chan error, 1) // written once by the control server's goroutine
	)
	if o.Control != "" {
		ln, err := net.Listen("tcp", o.Control)
		if err != nil {
			return fmt.Errorf("demo: control: %w", err)
		}
		ready.Control = ln.Addr().String()
		srv = &http.Server{Handler: f.Handler(), ReadHeaderTimeout: 10 * time.Second, ErrorLog: f.errLog}
		go func() { errc <- srv.Serve(ln) }()
	}
	o.Logger.Info().Int("backends", ready.Backends).Str("control", ready.Control).Uint64("nofile", limit).
		Dur("took", time.Since(start)).Msg(ReadyMsg)
	if o.Ready != nil {
		line, _ := json.Marshal(ready) // a struct of strings and ints always marshals
		if _, err := o.Ready.Write(append(line, '\n')); err != nil {
			o.Logger.Warn().Err(err).Msg("ready line")
		}
	}

	if srv == nil {
		<-ctx.Done()
		return nil
	}
	select {
	case err := <-errc:
		return fmt.Errorf("demo: control: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err = srv.Shutdown(shutdownCtx)
	<-errc
	if err != nil {
		return fmt.Errorf("demo: control shutdown: %w", err)
	}
	return nil
}
