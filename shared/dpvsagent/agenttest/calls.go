package agenttest

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"time"
)

// maxRequestBody caps what the emulator reads of a request.
const maxRequestBody = 64 << 20

// Call is one recorded API call.
type Call struct {
	Time     time.Time       `json:"time"` // when it arrived
	Method   string          `json:"method"`
	Path     string          `json:"path"`
	Query    string          `json:"query,omitempty"` // raw query string
	Body     json.RawMessage `json:"body,omitempty"`  // request body; a JSON string when it is not JSON
	Status   int             `json:"status"`          // 0: connection dropped or client gone
	Duration time.Duration   `json:"duration_ns"`
	Fault    bool            `json:"fault,omitempty"` // a fault was applied
}

// Calls returns the recorded API calls, oldest first (control calls under
// /_emu/ are not recorded).
func (a *Agent) Calls() []Call {
	a.mu.Lock()
	defer a.mu.Unlock()
	calls := a.calls
	if a.maxCalls > 0 && len(calls) > a.maxCalls {
		calls = calls[len(calls)-a.maxCalls:]
	}
	return append([]Call(nil), calls...)
}

// ResetCalls forgets the recorded calls.
func (a *Agent) ResetCalls() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls = nil
}

// LogErr returns the first error writing the call log, if any.
func (a *Agent) LogErr() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.logErr
}

func (a *Agent) record(c Call) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls = append(a.calls, c)
	if a.maxCalls > 0 && len(a.calls) >= 2*a.maxCalls {
		a.calls = append(a.calls[:0:0], a.calls[len(a.calls)-a.maxCalls:]...)
	}
	if a.log != nil && a.logErr == nil {
		line, err := json.Marshal(c)
		if err == nil {
			_, err = a.log.Write(append(line, '\n'))
		}
		a.logErr = err
	}
}

func rawBody(b []byte) json.RawMessage {
	b = bytes.TrimSpace(b)
	switch {
	case len(b) == 0:
		return nil
	case json.Valid(b):
		return json.RawMessage(b)
	}
	s, _ := json.Marshal(string(b))
	return s
}

// recorder remembers the status written and can swallow the body.
type recorder struct {
	http.ResponseWriter
	status  int
	discard bool
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.WriteHeader(http.StatusOK)
	}
	if r.discard {
		return len(b), nil
	}
	return r.ResponseWriter.Write(b)
}

// ServeHTTP serves the dpvs-agent API under /v2 and the emulator's control
// API under /_emu/. API calls are recorded and subject to faults.
func (a *Agent) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/_emu" || strings.HasPrefix(r.URL.Path, "/_emu/") {
		a.ctl.ServeHTTP(w, r)
		return
	}
	start := a.now()
	body, err := io.ReadAll(io.LimitReader(r.Body, maxRequestBody))
	if err != nil {
		// The client went away mid-body; nothing to answer.
		a.record(Call{Time: start, Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery})
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	rec := &recorder{ResponseWriter: w}
	call := Call{Time: start, Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Body: rawBody(body)}
	handled := false
	defer func() {
		p := recover()
		if handled && rec.status == 0 {
			rec.status = http.StatusOK // net/http answers 200 for a handler that wrote nothing
		}
		call.Status = rec.status
		call.Duration = a.now().Sub(start)
		a.record(call)
		if p != nil {
			panic(p) // http.ErrAbortHandler: the connection is dropped
		}
	}()
	if f, ok := a.takeFault(r); ok {
		call.Fault = true
		if !a.applyFault(rec, r, f) {
			return
		}
	}
	a.mux.ServeHTTP(rec, r)
	handled = true
}

// applyFault applies f and reports whether the call should still be handled.
func (a *Agent) applyFault(rec *recorder, r *http.Request, f Fault) bool {
	if err := f.validate(); err != nil { // only WithFaults can install one
		http.Error(rec, "agenttest: "+err.Error(), http.StatusInternalServerError)
		return false
	}
	if f.Latency > 0 {
		t := time.NewTimer(time.Duration(f.Latency))
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return false
		}
	}
	if f.BumpVersion {
		a.bumpFor(r.URL.Path)
	}
	switch {
	case f.Drop:
		panic(http.ErrAbortHandler)
	case f.Status204:
		rec.WriteHeader(http.StatusNoContent)
		return false
	case f.Status != 0:
		if f.Body != "" {
			rec.Header().Set("Content-Type", "application/json")
		}
		rec.WriteHeader(f.Status)
		if f.Body != "" && !f.EmptyBody {
			_, _ = rec.Write([]byte(f.Body))
		}
		return false
	}
	rec.discard = f.EmptyBody
	return true
}
