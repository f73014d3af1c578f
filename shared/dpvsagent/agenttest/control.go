package agenttest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
)

// controlMux serves the emulator's own API:
//
//	GET    /_emu/state    State as JSON
//	GET    /_emu/calls    recorded calls, a JSON array (?format=jsonl: JSON lines)
//	DELETE /_emu/calls    forget them
//	GET    /_emu/faults   installed faults
//	POST   /_emu/faults   install one Fault object or an array of them
//	DELETE /_emu/faults   remove every fault
//	POST   /_emu/seed     apply a Seed (YAML or JSON body)
//	POST   /_emu/reset    forget everything
func (a *Agent) controlMux() *http.ServeMux {
	m := http.NewServeMux()
	m.HandleFunc("GET /_emu/state", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, a.State())
	})
	m.HandleFunc("GET /_emu/calls", func(w http.ResponseWriter, r *http.Request) {
		calls := a.Calls()
		switch f := r.URL.Query().Get("format"); f {
		case "", "json":
			writeJSON(w, http.StatusOK, calls)
		case "jsonl":
			var buf bytes.Buffer
			enc := json.NewEncoder(&buf)
			for _, c := range calls {
				if err := enc.Encode(c); err != nil {
					http.Error(w, err.Error(), http.StatusInternalServerError)
					return
				}
			}
			w.Header().Set("Content-Type", "application/jsonl")
			_, _ = w.Write(buf.Bytes())
		default:
			http.Error(w, fmt.Sprintf("format %q: want json or jsonl", f), http.StatusBadRequest)
		}
	})
	m.HandleFunc("DELETE /_emu/calls", func(w http.ResponseWriter, r *http.Request) {
		a.ResetCalls()
		w.WriteHeader(http.StatusNoContent)
	})
	m.HandleFunc("GET /_emu/faults", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, a.Faults())
	})
	m.HandleFunc("POST /_emu/faults", func(w http.ResponseWriter, r *http.Request) {
		faults, err := decodeFaults(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		for _, f := range faults {
			if err := a.AddFault(f); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest) // the earlier ones stay installed
				return
			}
		}
		writeJSON(w, http.StatusOK, a.Faults())
	})
	m.HandleFunc("DELETE /_emu/faults", func(w http.ResponseWriter, r *http.Request) {
		a.ClearFaults()
		w.WriteHeader(http.StatusNoContent)
	})
	m.HandleFunc("POST /_emu/seed", func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(io.LimitReader(r.Body, maxRequestBody))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		s, err := ParseSeed(b)
		if err == nil {
			err = a.Seed(s)
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		writeJSON(w, http.StatusOK, a.State())
	})
	m.HandleFunc("POST /_emu/reset", func(w http.ResponseWriter, r *http.Request) {
		a.Reset()
		w.WriteHeader(http.StatusNoContent)
	})
	return m
}

// decodeFaults reads one Fault or an array of them, strictly.
func decodeFaults(r io.Reader) ([]Fault, error) {
	b, err := io.ReadAll(io.LimitReader(r, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("faults: %w", err)
	}
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return nil, fmt.Errorf("faults: empty body: want a fault object or an array of them")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var faults []Fault
	if b[0] == '[' {
		err = dec.Decode(&faults)
	} else {
		var f Fault
		err = dec.Decode(&f)
		faults = []Fault{f}
	}
	if err != nil {
		return nil, fmt.Errorf("faults: %w", err)
	}
	for i, f := range faults {
		if err := f.validate(); err != nil {
			return nil, fmt.Errorf("faults[%d]: %w", i, err)
		}
	}
	return faults, nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	writeBody(w, status, b, err)
}
