package agenttest

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/healthmesh/healthmesh/shared/dpvsagent"
	"github.com/healthmesh/healthmesh/shared/subject"
)

// The agent's non-standard statuses.
const (
	StatusOutdated        = dpvsagent.StatusOutdated // 270: version mismatch, body = current service
	StatusInvalidFrontend = 460                      // bad service id, or real server absent from DPVS
	StatusInvalidBackend  = 461                      // DPVS refused a real server
)

// liveService is one service as the DPVS dataplane has it.
type liveService struct {
	vs  dpvsagent.VirtualServer // scalar fields only: no Version, no RSs
	rss []*liveRS
}

// liveRS is one real server in the dataplane. Inhibited and Overloaded are
// never nil.
type liveRS struct {
	spec    dpvsagent.RealServer
	updated time.Time // last health update applied
	updates int       // health updates applied
}

func (l *liveService) find(key string) *liveRS {
	for _, rs := range l.rss {
		if rsKey(rs.spec) == key {
			return rs
		}
	}
	return nil
}

// rsKey is the agent's real server identity within a service: ip:port with
// the address normalized.
func rsKey(rs dpvsagent.RealServer) string {
	if a, err := netip.ParseAddr(rs.IP); err == nil {
		return a.Unmap().String() + ":" + strconv.Itoa(int(rs.Port))
	}
	return rs.IP + ":" + strconv.Itoa(int(rs.Port))
}

func snapFind(vs *dpvsagent.VirtualServer, key string) *dpvsagent.RealServerExpand {
	for i := range vs.RSs.Items {
		if rsKey(vs.RSs.Items[i].Spec) == key {
			return &vs.RSs.Items[i]
		}
	}
	return nil
}

// idResult classifies a path id the way the agent's handlers see it.
type idResult int

const (
	idOK      idResult = iota
	idShort            // fewer than three '-' parts: the real health handler panics
	idBad              // non-numeric port or bad address: "invalid frontend"
	idUnknown          // parses, but names no possible snapshot key (extra parts, unknown protocol)
)

// parseID splits "ip-port-proto" as the agent does and returns the snapshot
// key lower(ip)-port-proto.
func parseID(id string) (string, subject.VSID, idResult) {
	parts := strings.Split(id, "-")
	if len(parts) < 3 {
		return "", subject.VSID{}, idShort
	}
	port, err := strconv.ParseUint(parts[1], 10, 16)
	if err != nil {
		return "", subject.VSID{}, idBad
	}
	addr, err := netip.ParseAddr(parts[0])
	if err != nil || addr.Zone() != "" {
		return "", subject.VSID{}, idBad
	}
	if len(parts) != 3 {
		return "", subject.VSID{}, idUnknown
	}
	var proto subject.Proto
	switch strings.ToLower(parts[2]) {
	case "tcp":
		proto = subject.TCP
	case "udp":
		proto = subject.UDP
	default:
		return "", subject.VSID{}, idUnknown
	}
	vs := subject.VSID{Addr: addr.Unmap(), Proto: proto, Port: uint16(port)}
	return dpvsagent.PathID(vs), vs, idOK
}

// nextVersion returns now in milliseconds, strictly greater than any version
// handed out before. Callers hold a.mu.
func (a *Agent) nextVersion() string {
	ms := a.now().UnixMilli()
	if ms <= a.lastVersion {
		ms = a.lastVersion + 1
	}
	a.lastVersion = ms
	return strconv.FormatInt(ms, 10)
}

func boolString(b *bool) string {
	if b != nil && *b {
		return "true"
	}
	return "false"
}

// schedName maps a requested scheduler the way the agent does: known names
// kept, anything else wrr.
func schedName(s string) string {
	switch s {
	case "rr", "wrr", "wlc", "conhash", "fo", "mh":
		return s
	}
	return "wrr"
}

var proxyProtocols = map[string]bool{"": true, "v1": true, "v2": true, "v1-insecure": true, "v2-insecure": true, "disable": true}

// applySpec copies a VirtualServerSpecTiny into the service's scalar fields.
func applySpec(vs *dpvsagent.VirtualServer, spec dpvsagent.VirtualServerSpec) {
	vs.SchedName = schedName(spec.SchedName)
	vs.Fwmark = spec.Fwmark
	vs.Timeout = spec.Timeout
	vs.ConnTimeout = spec.ConnTimeout
	vs.Bps = spec.Bps
	vs.LimitProportion = spec.LimitProportion
	vs.SynProxy = boolString(spec.SynProxy)
	vs.ExpireQuiescent = boolString(spec.ExpireQuiescent)
	vs.Quic = boolString(spec.Quic)
	vs.Match = spec.Match
	var flags strings.Builder
	if vs.SynProxy == "true" {
		flags.WriteString("SynProxy|")
	}
	if vs.ExpireQuiescent == "true" {
		flags.WriteString("ExpireQuiescent|")
	}
	if vs.Quic == "true" {
		flags.WriteString("Quic|")
	}
	if vs.SchedName == "conhash" {
		flags.WriteString("ConHashBySrcIP|")
	}
	vs.Flags = flags.String()
}

// upsertVS is PUT /v2/vs/{id}: it creates the service in the dataplane and
// the snapshot (new version), or copies the spec into both (version kept).
// Callers hold a.mu. It reports whether the service was created.
func (a *Agent) upsertVS(key string, id subject.VSID, spec dpvsagent.VirtualServerSpec) bool {
	l, exists := a.live[key]
	if !exists {
		l = &liveService{vs: dpvsagent.VirtualServer{
			Addr: id.Addr.String(), Af: dpvsagent.AfInet, Port: id.Port, Proto: uint8(id.Proto),
		}}
		if id.Addr.Is6() {
			l.vs.Af = dpvsagent.AfInet6
		}
		a.live[key] = l
	}
	applySpec(&l.vs, spec)
	s, inSnap := a.snap[key]
	if !inSnap {
		s = &dpvsagent.VirtualServer{Version: a.nextVersion(), RSs: dpvsagent.RealServerList{Items: []dpvsagent.RealServerExpand{}}}
		a.snap[key] = s
	}
	version, rss := s.Version, s.RSs
	*s = l.vs
	s.Version, s.RSs, s.DestCheck = version, rss, nil
	return !exists
}

// normRS validates a real server from a request body and fills the
// defaults the agent fills (inhibited false, overloaded false, mode FNAT).
func normRS(rs dpvsagent.RealServer) (dpvsagent.RealServer, error) {
	a, err := netip.ParseAddr(rs.IP)
	if err != nil || a.Zone() != "" {
		return rs, fmt.Errorf("real server ip %q: not an IP address", rs.IP)
	}
	rs.IP = a.Unmap().String()
	rs.Inhibited = dpvsagent.Bool(rs.IsInhibited())
	rs.Overloaded = dpvsagent.Bool(rs.Overloaded != nil && *rs.Overloaded)
	switch m := strings.ToUpper(rs.Mode); m {
	case "":
		rs.Mode = "FNAT"
	case "FNAT", "SNAT", "DR", "TUNNEL", "NAT":
		rs.Mode = m
	default:
		return rs, fmt.Errorf("real server %s mode %q: want FNAT, SNAT, DR, TUNNEL or NAT", rs.IP, rs.Mode)
	}
	return rs, nil
}

// addOrUpdateRS is PUT /v2/vs/{id}/rs: dataplane and snapshot get the listed
// real servers added or updated (weight, inhibited), and the version moves.
// Callers hold a.mu and have normalized rss.
func (a *Agent) addOrUpdateRS(key string, rss []dpvsagent.RealServer) {
	l := a.live[key]
	for _, rs := range rss {
		if cur := l.find(rsKey(rs)); cur != nil {
			cur.spec = rs
		} else {
			l.rss = append(l.rss, &liveRS{spec: rs})
		}
	}
	s := a.snap[key]
	if s == nil {
		return
	}
	for _, rs := range rss {
		if cur := snapFind(s, rsKey(rs)); cur != nil {
			cur.Spec.Weight, cur.Spec.Inhibited = rs.Weight, rs.Inhibited
		} else {
			s.RSs.Items = append(s.RSs.Items, dpvsagent.RealServerExpand{Spec: rs})
		}
	}
	s.Version = a.nextVersion()
}

// replaceRS is POST /v2/vs/{id}/rs. Callers hold a.mu.
func (a *Agent) replaceRS(key string, rss []dpvsagent.RealServer) {
	l := a.live[key]
	l.rss = make([]*liveRS, 0, len(rss))
	items := make([]dpvsagent.RealServerExpand, 0, len(rss))
	seen := map[string]bool{}
	for _, rs := range rss {
		if seen[rsKey(rs)] {
			continue
		}
		seen[rsKey(rs)] = true
		l.rss = append(l.rss, &liveRS{spec: rs})
		items = append(items, dpvsagent.RealServerExpand{Spec: rs})
	}
	if s := a.snap[key]; s != nil {
		s.RSs.Items = items
		s.Version = a.nextVersion()
	}
}

// --- handlers of the /v2 API ---

func (a *Agent) listVS(w http.ResponseWriter, r *http.Request) {
	hc, ok := queryBool(w, r, "healthcheck")
	if !ok {
		return
	}
	a.mu.Lock()
	var items []*dpvsagent.VirtualServer
	if hc {
		items = a.liveModels("")
	} else {
		items = make([]*dpvsagent.VirtualServer, 0, len(a.snap))
		for _, s := range a.snap {
			items = append(items, s)
		}
	}
	rand.Shuffle(len(items), func(i, j int) { items[i], items[j] = items[j], items[i] })
	body, err := json.Marshal(struct {
		Items []*dpvsagent.VirtualServer `json:"Items"`
	}{items})
	a.mu.Unlock()
	writeBody(w, http.StatusOK, body, err)
}

// liveModels renders the dataplane (all services, or the one with key) as
// the agent's live path does: no Version, stats present. Callers hold a.mu.
func (a *Agent) liveModels(key string) []*dpvsagent.VirtualServer {
	out := []*dpvsagent.VirtualServer{}
	for k, l := range a.live {
		if key != "" && k != key {
			continue
		}
		vs := l.vs
		vs.Stats = &dpvsagent.ServerStats{}
		vs.RSs.Items = make([]dpvsagent.RealServerExpand, len(l.rss))
		for i, rs := range l.rss {
			vs.RSs.Items[i] = dpvsagent.RealServerExpand{Spec: rs.spec, Stats: &dpvsagent.ServerStats{}}
		}
		out = append(out, &vs)
	}
	return out
}

func (a *Agent) getVS(w http.ResponseWriter, r *http.Request) {
	hc, ok := queryBool(w, r, "healthcheck")
	if !ok {
		return
	}
	key, _, res := parseID(r.PathValue("id"))
	a.mu.Lock()
	var items []*dpvsagent.VirtualServer
	switch s := a.snap[key]; {
	case res == idOK && !hc && s != nil:
		items = []*dpvsagent.VirtualServer{s}
	case res == idOK:
		items = a.liveModels(key)
	case res == idUnknown:
		items = nil // an id the agent parses but cannot look up: not found
	default:
		items = a.liveModels("") // unparsable id: the agent lists everything live
	}
	if len(items) == 0 {
		a.mu.Unlock()
		w.WriteHeader(http.StatusNotFound)
		return
	}
	body, err := json.Marshal(struct {
		Items []*dpvsagent.VirtualServer `json:"Items"`
	}{items})
	a.mu.Unlock()
	writeBody(w, http.StatusOK, body, err)
}

func (a *Agent) putVS(w http.ResponseWriter, r *http.Request) {
	key, id, res := parseID(r.PathValue("id"))
	if res != idOK {
		w.WriteHeader(StatusInvalidFrontend)
		return
	}
	var spec dpvsagent.VirtualServerSpec
	if !decodeBody(w, r, "spec", &spec) {
		return
	}
	if !proxyProtocols[spec.ProxyProtocol] {
		writeSwaggerError(w, http.StatusUnprocessableEntity, 606,
			fmt.Sprintf("ProxyProtocol in body should be one of [v1 v2 v1-insecure v2-insecure disable], got %q", spec.ProxyProtocol))
		return
	}
	a.mu.Lock()
	created := a.upsertVS(key, id, spec)
	a.mu.Unlock()
	if created {
		w.WriteHeader(http.StatusCreated)
		return
	}
	w.WriteHeader(http.StatusOK)
}

func (a *Agent) deleteVS(w http.ResponseWriter, r *http.Request) {
	key, _, res := parseID(r.PathValue("id"))
	if res == idShort || res == idBad {
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	a.mu.Lock()
	_, exists := a.live[key]
	delete(a.live, key)
	delete(a.snap, key)
	a.mu.Unlock()
	if !exists {
		w.WriteHeader(http.StatusNotFound)
		return
	}
	w.WriteHeader(http.StatusOK)
}

// rsRequest decodes and normalizes a RealServerTinyList body for the
// service in the path; it answers the request itself and returns false when
// something is wrong.
func (a *Agent) rsRequest(w http.ResponseWriter, r *http.Request) (string, []dpvsagent.RealServer, bool) {
	key, _, res := parseID(r.PathValue("id"))
	if res != idOK {
		w.WriteHeader(StatusInvalidFrontend)
		return "", nil, false
	}
	var body struct {
		Items []dpvsagent.RealServer `json:"Items"`
	}
	if !decodeBody(w, r, "rss", &body) {
		return "", nil, false
	}
	rss := make([]dpvsagent.RealServer, len(body.Items))
	for i, rs := range body.Items {
		n, err := normRS(rs)
		if err != nil {
			writeSwaggerError(w, StatusInvalidBackend, StatusInvalidBackend, fmt.Sprintf("Items[%d]: %v", i, err))
			return "", nil, false
		}
		rss[i] = n
	}
	return key, rss, true
}

func (a *Agent) putRS(w http.ResponseWriter, r *http.Request) {
	a.changeRS(w, r, a.addOrUpdateRS)
}

func (a *Agent) postRS(w http.ResponseWriter, r *http.Request) {
	a.changeRS(w, r, a.replaceRS)
}

func (a *Agent) changeRS(w http.ResponseWriter, r *http.Request, apply func(string, []dpvsagent.RealServer)) {
	key, rss, ok := a.rsRequest(w, r)
	if !ok {
		return
	}
	a.mu.Lock()
	_, exists := a.live[key]
	if exists {
		apply(key, rss)
	}
	a.mu.Unlock()
	if !exists {
		w.WriteHeader(http.StatusInternalServerError) // DPVS: no such service
		return
	}
	w.WriteHeader(http.StatusOK)
}

// deleteRS removes real servers from the dataplane only: the real agent
// leaves them (and the version) in its snapshot.
func (a *Agent) deleteRS(w http.ResponseWriter, r *http.Request) {
	a.changeRS(w, r, a.removeRS)
}

// removeRS drops the listed real servers from the dataplane. Callers hold
// a.mu.
func (a *Agent) removeRS(key string, rss []dpvsagent.RealServer) {
	l := a.live[key]
	drop := map[string]bool{}
	for _, rs := range rss {
		drop[rsKey(rs)] = true
	}
	kept := l.rss[:0]
	for _, rs := range l.rss {
		if !drop[rsKey(rs.spec)] {
			kept = append(kept, rs)
		}
	}
	clear(l.rss[len(kept):])
	l.rss = kept
}

// putHealth is the BackendUpdate endpoint, in the agent's order (§8.5).
func (a *Agent) putHealth(w http.ResponseWriter, r *http.Request) {
	if !r.URL.Query().Has("version") {
		writeSwaggerError(w, http.StatusUnprocessableEntity, 602, "version in query is required")
		return
	}
	version := r.URL.Query().Get("version")
	key, _, res := parseID(r.PathValue("id"))
	switch res {
	case idShort:
		// The real handler indexes past the end of the split id and panics;
		// with no recovery middleware the client sees a dropped connection.
		panic(http.ErrAbortHandler)
	case idBad:
		w.WriteHeader(StatusInvalidFrontend)
		return
	}
	var body struct {
		Items []dpvsagent.RealServer `json:"Items"`
	}
	if !decodeBody(w, r, "rss", &body) {
		return
	}
	a.mu.Lock()
	s := a.snap[key]
	if s == nil {
		a.mu.Unlock()
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	valid := make([]dpvsagent.RealServer, 0, len(body.Items))
	for _, rs := range body.Items {
		if snapFind(s, rsKey(rs)) != nil {
			valid = append(valid, rs)
		}
	}
	if !strings.EqualFold(s.Version, version) {
		out, err := json.Marshal(s)
		a.mu.Unlock()
		writeBody(w, StatusOutdated, out, err)
		return
	}
	// DPVS edits each destination's weight and inhibited flag; only the last
	// one's result decides the answer.
	ok, now := true, a.now()
	l := a.live[key]
	for _, rs := range valid {
		var cur *liveRS
		if l != nil {
			cur = l.find(rsKey(rs))
		}
		if cur == nil {
			ok = false
			continue
		}
		ok = true
		cur.spec.Weight = rs.Weight
		cur.spec.Inhibited = dpvsagent.Bool(rs.IsInhibited())
		cur.updated = now
		cur.updates++
	}
	if ok {
		for _, rs := range valid {
			snapFind(s, rsKey(rs)).Spec.Inhibited = dpvsagent.Bool(rs.IsInhibited())
		}
	}
	a.mu.Unlock()
	if !ok {
		w.WriteHeader(StatusInvalidFrontend) // EDPVS_NOTEXIST
		return
	}
	w.WriteHeader(http.StatusOK)
}

// inetAddr is the agent's InetAddrSpec.
type inetAddr struct {
	Addr      string `json:"addr"`
	Broadcast string `json:"broadcast,omitempty"`
	Scope     string `json:"scope,omitempty"`
}

// parsePrefix reads "ip[/plen]"; no length means a host prefix.
func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("address %q: %w", s, err)
		}
		return netip.PrefixFrom(p.Addr().Unmap(), p.Bits()), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("address %q: not an IP address", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// deviceCall answers PUT/DELETE /v2/device/{name}/addr: 500 for a missing
// or malformed InetAddrSpec, otherwise change under the lock and 200 (the
// agent reports "already exists" and "not exists" as success).
func (a *Agent) deviceCall(w http.ResponseWriter, r *http.Request, change func(name string, p netip.Prefix)) {
	name := r.PathValue("name")
	var spec inetAddr
	if err := json.NewDecoder(r.Body).Decode(&spec); err != nil || name == "" {
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	p, err := parsePrefix(spec.Addr)
	if err != nil {
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	a.mu.Lock()
	change(name, p)
	a.mu.Unlock()
	w.WriteHeader(http.StatusOK)
}

func (a *Agent) putAddr(w http.ResponseWriter, r *http.Request) {
	a.deviceCall(w, r, a.addDeviceAddr)
}

func (a *Agent) deleteAddr(w http.ResponseWriter, r *http.Request) {
	a.deviceCall(w, r, a.delDeviceAddr)
}

// addDeviceAddr records p on device name. Callers hold a.mu.
func (a *Agent) addDeviceAddr(name string, p netip.Prefix) {
	set := a.devices[name]
	if set == nil {
		set = map[string]struct{}{}
		a.devices[name] = set
	}
	set[p.String()] = struct{}{}
}

// delDeviceAddr removes p's address from device name whatever the prefix
// length it was added with (DpvsAddrAddDel deletes "VIP" with no length).
// Callers hold a.mu.
func (a *Agent) delDeviceAddr(name string, p netip.Prefix) {
	set := a.devices[name]
	for k := range set {
		if q, err := netip.ParsePrefix(k); err == nil && q.Addr() == p.Addr() {
			delete(set, k)
		}
	}
	if set != nil && len(set) == 0 {
		delete(a.devices, name)
	}
}

// --- request and response helpers ---

// queryBool reads a boolean query parameter as go-swagger does
// (swag.ConvertBool); an invalid value is a 422.
func queryBool(w http.ResponseWriter, r *http.Request, name string) (bool, bool) {
	v := r.URL.Query().Get(name)
	switch strings.ToLower(v) {
	case "true", "1", "yes", "ok", "y", "on", "selected", "checked", "t", "enabled":
		return true, true
	case "false", "0", "no", "n", "off", "f", "disabled", "":
		return false, true
	}
	writeSwaggerError(w, http.StatusUnprocessableEntity, 600,
		fmt.Sprintf("%s in query must be of type boolean: %q", name, v))
	return false, false
}

// decodeBody decodes an optional JSON body (go-swagger leaves the parameter
// nil when there is none); malformed JSON is a 400.
func decodeBody(w http.ResponseWriter, r *http.Request, name string, v any) bool {
	dec := json.NewDecoder(r.Body)
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		writeSwaggerError(w, http.StatusBadRequest, http.StatusBadRequest,
			fmt.Sprintf("parsing %s body failed, because %v", name, err))
		return false
	}
	return true
}

func writeSwaggerError(w http.ResponseWriter, status, code int, msg string) {
	body, err := json.Marshal(struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}{code, msg})
	writeBody(w, status, body, err)
}

func writeBody(w http.ResponseWriter, status int, body []byte, err error) {
	if err != nil {
		http.Error(w, "encode response: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}
