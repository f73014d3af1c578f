package aggregator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/healthmesh/healthmesh/services/aggregator/internal/engine"
	"github.com/healthmesh/healthmesh/services/aggregator/internal/inventory"
	"github.com/healthmesh/healthmesh/services/aggregator/internal/topology"
	"github.com/healthmesh/healthmesh/shared/config"
	"github.com/healthmesh/healthmesh/shared/subject"
)

// APIRequest is the JSON body of hm.api.pause / hm.api.resume (status takes
// none).
type APIRequest struct {
	VS      string `json:"vs"`      // VIP-PROTO-PORT
	Backend string `json:"backend"` // RIP-PROTO-PORT
	Who     string `json:"who"`
	Why     string `json:"why"`
}

// APIReply is the JSON answer of every hm.api.* request.
type APIReply struct {
	OK     bool                `json:"ok"`
	Error  string              `json:"error,omitempty"`
	Events int                 `json:"events,omitempty"`
	Info   *engine.Info        `json:"info,omitempty"`
	Tree   []topology.VAStatus `json:"tree,omitempty"`
}

// ErrNoLeader means no aggregator is active to answer.
var ErrNoLeader = errors.New("aggregator: no active aggregator answered")

// serveAPI answers hm.api.* on the active aggregator, through the engine.
func (s *server) serveAPI(ctx context.Context, requests chan<- engine.Request) (func(), error) {
	sp := s.layout.Space
	handle := func(op engine.Op) nats.MsgHandler {
		return func(m *nats.Msg) {
			rep := s.ask(ctx, requests, op, m.Data)
			b, _ := json.Marshal(rep)
			if err := m.Respond(b); err != nil {
				s.log.Debug().Err(err).Msg("api reply not sent")
			}
		}
	}
	var subs []*nats.Subscription
	for _, op := range []engine.Op{engine.OpStatus, engine.OpPause, engine.OpResume} {
		sub, err := s.nc.Subscribe(sp.API(string(op)), handle(op))
		if err != nil {
			for _, s := range subs {
				s.Unsubscribe()
			}
			return nil, err
		}
		subs = append(subs, sub)
	}
	return func() {
		for _, sub := range subs {
			sub.Unsubscribe()
		}
	}, nil
}

// ask hands one request to the engine and waits for its reply.
func (s *server) ask(ctx context.Context, requests chan<- engine.Request, op engine.Op, body []byte) APIReply {
	req := engine.Request{Op: op}
	if op != engine.OpStatus {
		var in APIRequest
		if err := json.Unmarshal(body, &in); err != nil {
			return APIReply{Error: "request body: " + err.Error()}
		}
		vs, err := subject.ParseEndpoint(in.VS)
		if err != nil {
			return APIReply{Error: "vs: " + err.Error()}
		}
		be, err := subject.ParseEndpoint(in.Backend)
		if err != nil {
			return APIReply{Error: "backend: " + err.Error()}
		}
		if in.Who == "" {
			return APIReply{Error: "who: required (the operator's name, for the audit trail)"}
		}
		req.VS, req.Backend, req.Who, req.Why = vs, be, in.Who, in.Why
	}
	reply := make(chan engine.Reply, 1)
	req.Reply = reply
	tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	select {
	case requests <- req:
	case <-tctx.Done():
		return APIReply{Error: "engine busy"}
	}
	select {
	case r := <-reply:
		out := APIReply{OK: r.Err == nil, Events: r.Events, Info: &r.Info, Tree: r.Tree}
		if r.Err != nil {
			out.Error = r.Err.Error()
		}
		return out
	case <-tctx.Done():
		return APIReply{Error: "engine did not answer"}
	}
}

// Status asks the active aggregator for its status tree over NATS.
func Status(ctx context.Context, nc *nats.Conn, sp subject.Space) (APIReply, error) {
	return Call(ctx, nc, sp, engine.OpStatus, nil)
}

// Pause asks the active aggregator to pause a backend of a VS for
// maintenance (req.Who required, req.Why recorded in the audit trail). The
// reply's OK and Error say whether it was applied.
func Pause(ctx context.Context, nc *nats.Conn, sp subject.Space, req APIRequest) (APIReply, error) {
	return Call(ctx, nc, sp, engine.OpPause, &req)
}

// Resume asks the active aggregator to resume a paused backend.
func Resume(ctx context.Context, nc *nats.Conn, sp subject.Space, req APIRequest) (APIReply, error) {
	return Call(ctx, nc, sp, engine.OpResume, &req)
}

// Call sends one hm.api request and decodes the reply.
func Call(ctx context.Context, nc *nats.Conn, sp subject.Space, op engine.Op, req *APIRequest) (APIReply, error) {
	var body []byte
	if req != nil {
		body, _ = json.Marshal(req)
	}
	m, err := nc.RequestWithContext(ctx, sp.API(string(op)), body)
	if err != nil {
		if errors.Is(err, nats.ErrNoResponders) {
			return APIReply{}, ErrNoLeader
		}
		return APIReply{}, fmt.Errorf("aggregator: %s: %w", op, err)
	}
	var rep APIReply
	if err := json.Unmarshal(m.Data, &rep); err != nil {
		return APIReply{}, fmt.Errorf("aggregator: %s reply: %w", op, err)
	}
	return rep, nil
}

// routes registers the HTTP endpoints. withHealthz adds /healthz (the
// all-in-one serves its own).
func (s *server) routes(mux *http.ServeMux, withHealthz bool) {
	mux.Handle(s.o.MetricsURI, promhttp.HandlerFor(s.o.Registry, promhttp.HandlerOpts{Registry: s.o.Registry}))
	mux.HandleFunc(s.o.StatusURI, s.httpStatus)
	mux.HandleFunc(s.o.ConfURI, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write(config.Render(s.cfg.Load()))
	})
	mux.HandleFunc(s.o.ConfCheckURI, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprint(w, config.CheckReport(s.o.ConfigFile))
	})
	if withHealthz {
		mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
			if !s.nc.IsConnected() {
				http.Error(w, "nats: not connected", http.StatusServiceUnavailable)
				return
			}
			role := "standby"
			if s.active.Load() {
				role = "active"
			}
			fmt.Fprintln(w, "ok", role)
		})
	}
}

// httpStatus serves the DPVS text tree (or JSON with ?format=json), from
// whichever aggregator is active.
func (s *server) httpStatus(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	rep, err := Status(ctx, s.nc, s.layout.Space)
	if err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	if strings.EqualFold(r.URL.Query().Get("format"), "json") {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(rep)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprint(w, RenderStatus(rep, time.Now()))
}

// RenderStatus is the DPVS-style text of a status reply.
func RenderStatus(rep APIReply, now time.Time) string {
	var b strings.Builder
	if rep.Info != nil {
		fmt.Fprintf(&b, "%s\n\nActive aggregator: %s (term %d), targets %d, results through %d (acked %d)\n\n",
			now.Format(time.RFC3339), rep.Info.ID, rep.Info.Term, rep.Info.Targets, rep.Info.Seq, rep.Info.Acked)
	}
	b.WriteString(topology.RenderText(rep.Tree, now))
	return b.String()
}

// metrics are the aggregator's series.
type metrics struct {
	engine    *engine.Metrics
	inventory *inventory.Metrics
	reloads   *prometheus.CounterVec
	active    prometheus.Gauge
	term      prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		engine:    engine.NewMetrics(reg),
		inventory: inventory.NewMetrics(reg),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "healthmesh_aggregator_config_reloads_total",
			Help: "Configuration reloads by result (applied, rejected)."}, []string{"result"}),
		active: prometheus.NewGauge(prometheus.GaugeOpts{Name: "healthmesh_aggregator_active",
			Help: "1 while this instance is the active aggregator."}),
		term: prometheus.NewGauge(prometheus.GaugeOpts{Name: "healthmesh_aggregator_term",
			Help: "Leader term of this instance's last tenure."}),
	}
	reg.MustRegister(m.reloads, m.active, m.term)
	return m
}
