package demo

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// verb is one POST action of the control API.
type verb struct {
	path string
	// proto narrows an ?addr= selection when the request names none: /status
	// means the http backend on that address, not a udp one sharing the port.
	proto Proto
	// prepare reads the verb's parameters once, before anything changes, and
	// returns what to do to each selected backend.
	prepare func(q url.Values) (func(name string) error, error)
}

// Handler returns the control API:
//
//	GET  /backends                  every backend: name, proto, addr, state, code, delay, requests
//	GET  /backends/{name}           one backend
//	POST /fail/{name}               close its socket (connect refused, ICMP port unreachable)
//	POST /recover/{name}            bind the same address again
//	POST /status/{name}?code=503    http: answer this code (200 to undo)
//	POST /slow/{name}?delay=3s      wait before every answer (0s to undo)
//	GET  /healthz                   "ok"
//
// Every POST also takes ?addr=ip:port (repeatable, optionally &proto=tcp|http|udp)
// instead of a name, and answers the JSON status of the backends it changed.
// Errors are JSON {"error": "..."} with 404 for an unknown backend and 400
// for a bad parameter.
func (f *Farm) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /backends", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, f.Backends())
	})
	mux.HandleFunc("GET /backends/{name}", func(w http.ResponseWriter, r *http.Request) {
		st, err := f.Backend(r.PathValue("name"))
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, st)
	})
	verbs := []verb{
		{path: "fail", prepare: func(url.Values) (func(string) error, error) { return f.Fail, nil }},
		{path: "recover", prepare: func(url.Values) (func(string) error, error) { return f.Recover, nil }},
		{path: "status", proto: HTTP, prepare: func(q url.Values) (func(string) error, error) {
			code, err := strconv.Atoi(q.Get("code"))
			if err != nil {
				return nil, fmt.Errorf("%w: code %q: want a number such as 503", ErrSpec, q.Get("code"))
			}
			if err := checkCode(code); err != nil {
				return nil, fmt.Errorf("%w: %w", ErrSpec, err)
			}
			return func(name string) error { return f.SetStatus(name, code) }, nil
		}},
		{path: "slow", prepare: func(q url.Values) (func(string) error, error) {
			d, err := time.ParseDuration(q.Get("delay"))
			if err != nil || d < 0 {
				return nil, fmt.Errorf("%w: delay %q: want a duration such as 3s (0s to undo)", ErrSpec, q.Get("delay"))
			}
			return func(name string) error { return f.SetDelay(name, d) }, nil
		}},
	}
	for _, v := range verbs {
		h := f.action(v)
		mux.HandleFunc("POST /"+v.path, h)
		mux.HandleFunc("POST /"+v.path+"/{name}", h)
	}
	return mux
}

func (f *Farm) action(v verb) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		do, err := v.prepare(q)
		if err != nil {
			writeError(w, err)
			return
		}
		names, err := f.selection(r.PathValue("name"), q, v.proto)
		if err != nil {
			writeError(w, err)
			return
		}
		out := make([]Status, 0, len(names))
		for _, n := range names {
			if err := do(n); err != nil {
				writeError(w, err)
				return
			}
			st, _ := f.Backend(n)
			out = append(out, st)
		}
		writeJSON(w, http.StatusOK, out)
	}
}

// selection is the backends a request names: the path's {name}, or every
// backend on each ?addr=, narrowed by ?proto= (or the verb's default).
func (f *Farm) selection(name string, q url.Values, defProto Proto) ([]string, error) {
	addrs := q["addr"]
	switch {
	case name != "" && len(addrs) > 0:
		return nil, fmt.Errorf("%w: give a name or ?addr=, not both", ErrSpec)
	case name != "":
		if _, err := f.get(name); err != nil {
			return nil, err
		}
		return []string{name}, nil
	case len(addrs) == 0:
		return nil, fmt.Errorf("%w: name a backend: /verb/{name} or /verb?addr=ip:port", ErrSpec)
	}
	proto := defProto
	if p := q.Get("proto"); p != "" {
		var err error
		if proto, err = ParseProto(p); err != nil {
			return nil, err
		}
	}
	var names []string
	for _, a := range addrs {
		ns, err := f.Lookup(a, proto)
		if err != nil {
			return nil, err
		}
		names = append(names, ns...)
	}
	return names, nil
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v) // the client went away; nothing to tell it
}

func writeError(w http.ResponseWriter, err error) {
	code := http.StatusInternalServerError
	switch {
	case errors.Is(err, ErrNoBackend):
		code = http.StatusNotFound
	case errors.Is(err, ErrSpec), errors.Is(err, ErrNotHTTP):
		code = http.StatusBadRequest
	}
	writeJSON(w, code, map[string]string{"error": err.Error()})
}
