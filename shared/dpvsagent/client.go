package dpvsagent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/healthmesh/healthmesh/shared/subject"
)

// Sentinel errors; see the package documentation.
var (
	// ErrStatus is matched by every *StatusError (an unexpected HTTP status).
	ErrStatus = errors.New("unexpected status")
	// ErrNotFound is matched by a *StatusError with status 404.
	ErrNotFound = errors.New("not found")
	// ErrOutdated is returned by UpdateHealth when the agent answers 270:
	// the version sent is not the service's current one.
	ErrOutdated = errors.New("outdated service version")
	// ErrEmpty means a response that must carry a body had none.
	ErrEmpty = errors.New("empty response body")
	// ErrInvalid means a response body (or a field in it) that does not parse.
	ErrInvalid = errors.New("invalid response")
)

// StatusOutdated is the agent's "version outdated" status of the health update.
const StatusOutdated = 270

// DefaultTimeout bounds every call unless WithTimeout says otherwise (the
// DPVS healthcheck's http.Client uses the same 10 s).
const DefaultTimeout = 10 * time.Second

// maxBody caps how much of a response is read: a listing of 100k real
// servers is about 20 MB.
const maxBody = 256 << 20

// StatusError is an unexpected HTTP status with the (truncated) body.
type StatusError struct {
	Method string
	Path   string
	Code   int
	Body   string
}

func (e *StatusError) Error() string {
	s := fmt.Sprintf("dpvs-agent: %s %s: status %d", e.Method, e.Path, e.Code)
	if e.Body != "" {
		s += ": " + e.Body
	}
	return s
}

// Is makes a StatusError match ErrStatus, and ErrNotFound when it is a 404.
func (e *StatusError) Is(target error) bool {
	return target == ErrStatus || (target == ErrNotFound && e.Code == http.StatusNotFound)
}

// Client calls one dpvs-agent. It is safe for concurrent use.
type Client struct {
	base    string // scheme://host[:port][/prefix], no trailing slash
	hc      *http.Client
	timeout time.Duration
	ua      string
}

// Option configures a Client.
type Option func(*Client)

// WithHTTPClient uses hc (for TLS settings, a transport, a proxy) instead of
// a client of the package's own.
func WithHTTPClient(hc *http.Client) Option { return func(c *Client) { c.hc = hc } }

// WithTimeout bounds every call (default DefaultTimeout); 0 or less leaves
// only the caller's context.
func WithTimeout(d time.Duration) Option { return func(c *Client) { c.timeout = d } }

// WithUserAgent sets the User-Agent header (default "healthmesh").
func WithUserAgent(ua string) Option { return func(c *Client) { c.ua = ua } }

// New returns a client for the agent at addr; see the package documentation
// for the accepted forms.
func New(addr string, opts ...Option) (*Client, error) {
	base, err := baseURL(addr)
	if err != nil {
		return nil, err
	}
	c := &Client{base: base, timeout: DefaultTimeout, ua: "healthmesh"}
	for _, o := range opts {
		o(c)
	}
	if c.hc == nil {
		c.hc = &http.Client{}
	}
	return c, nil
}

// BaseURL returns the normalized agent URL calls are made against.
func (c *Client) BaseURL() string { return c.base }

func baseURL(addr string) (string, error) {
	addr = strings.TrimSpace(addr)
	if addr == "" {
		return "", fmt.Errorf("dpvs-agent address: empty")
	}
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	u, err := url.Parse(addr)
	if err != nil {
		return "", fmt.Errorf("dpvs-agent address %q: %w", addr, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", fmt.Errorf("dpvs-agent address %q: scheme %q (want http or https)", addr, u.Scheme)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("dpvs-agent address %q: want scheme://host:port[/prefix] only", addr)
	}
	host, port := u.Hostname(), u.Port()
	if host == "" {
		if u.Host == "" || port == "" {
			return "", fmt.Errorf("dpvs-agent address %q: no host or port", addr)
		}
		host = "127.0.0.1"
	}
	if port != "" {
		u.Host = net.JoinHostPort(host, port)
	} else {
		if strings.HasSuffix(u.Host, ":") {
			return "", fmt.Errorf("dpvs-agent address %q: empty port", addr)
		}
		u.Host = host
		if strings.Contains(host, ":") {
			u.Host = "[" + host + "]"
		}
	}
	return strings.TrimRight(u.String(), "/"), nil
}

// ListVS lists the agent's services (GET /v2/vs, snapshot path). Every
// listed service has a TCP or UDP protocol, a parsable address and version
// and parsable real server addresses; otherwise the whole list is an error.
func (c *Client) ListVS(ctx context.Context) ([]VirtualServer, error) {
	return c.getList(ctx, "/v2/vs", true)
}

// getList GETs a service list and validates every item (the version only
// when wantVersion).
func (c *Client) getList(ctx context.Context, path string, wantVersion bool) ([]VirtualServer, error) {
	code, body, err := c.do(ctx, http.MethodGet, path, nil)
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, statusErr(http.MethodGet, path, code, body)
	}
	vss, err := decodeList(body)
	if err != nil {
		return nil, fmt.Errorf("dpvs-agent: GET %s: %w", path, err)
	}
	for i := range vss {
		if err := vss[i].validate(wantVersion); err != nil {
			return nil, fmt.Errorf("dpvs-agent: GET %s: Items[%d]: %w", path, i, err)
		}
	}
	return vss, nil
}

// decodeList accepts the agent's {"Items":[...]} and a bare [...]; anything
// else, including an empty body or a JSON null, is an error.
func decodeList(body []byte) ([]VirtualServer, error) {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 {
		return nil, ErrEmpty
	}
	var vss []VirtualServer
	switch trimmed[0] {
	case '[':
		if err := json.Unmarshal(trimmed, &vss); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
		}
	case '{':
		var l struct {
			Items *[]VirtualServer `json:"Items"`
		}
		if err := json.Unmarshal(trimmed, &l); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
		}
		if l.Items == nil {
			return nil, fmt.Errorf("%w: no Items in %s", ErrInvalid, clip(trimmed))
		}
		vss = *l.Items
	default:
		return nil, fmt.Errorf("%w: not a service list: %s", ErrInvalid, clip(trimmed))
	}
	if vss == nil {
		vss = []VirtualServer{}
	}
	return vss, nil
}

// GetVS returns one service (GET /v2/vs/{id}); ErrNotFound when the agent
// answers 404. The version is not required: a service the agent found only
// by its live lookup has none.
func (c *Client) GetVS(ctx context.Context, vs subject.VSID) (*VirtualServer, error) {
	path, err := vsPath(vs, "")
	if err != nil {
		return nil, err
	}
	vss, err := c.getList(ctx, path, false)
	if err != nil {
		return nil, err
	}
	for i := range vss {
		if id, _ := vss[i].ID(); id == vs {
			return &vss[i], nil
		}
	}
	return nil, fmt.Errorf("dpvs-agent: GET %s: %w: %d services listed, none is %s", path, ErrNotFound, len(vss), vs)
}

// UpdateHealth sets weight and inhibited flag of the listed real servers
// (PUT /v2/vs/{id}/rs/health?version=V), the BackendUpdate call. An absent
// Inhibited is sent as false; the key is written "inhibited".
//
// 200 → (nil, nil). 270 → (the agent's current service, ErrOutdated): nothing
// was applied, retry with its Version. Any other status → a *StatusError.
func (c *Client) UpdateHealth(ctx context.Context, vs subject.VSID, version string, items []RealServer) (*VirtualServer, error) {
	path, err := vsPath(vs, "/rs/health")
	if err != nil {
		return nil, err
	}
	full := path + "?version=" + url.QueryEscape(version)
	send := make([]RealServer, len(items))
	for i, rs := range items {
		if rs.Inhibited == nil {
			rs.Inhibited = Bool(false)
		}
		send[i] = rs
	}
	code, body, err := c.do(ctx, http.MethodPut, full, rsList{Items: send})
	if err != nil {
		return nil, err
	}
	switch code {
	case http.StatusOK:
		return nil, nil
	case StatusOutdated:
		var fresh VirtualServer
		if len(bytes.TrimSpace(body)) == 0 {
			return nil, fmt.Errorf("dpvs-agent: PUT %s: %w (status 270): %w", path, ErrOutdated, ErrEmpty)
		}
		if err := json.Unmarshal(body, &fresh); err != nil {
			return nil, fmt.Errorf("dpvs-agent: PUT %s: %w (status 270): %w: %v", path, ErrOutdated, ErrInvalid, err)
		}
		if err := fresh.validate(true); err != nil {
			return nil, fmt.Errorf("dpvs-agent: PUT %s: %w (status 270): %w", path, ErrOutdated, err)
		}
		return &fresh, fmt.Errorf("dpvs-agent: PUT %s: %w: sent %q, current %q", path, ErrOutdated, version, fresh.Version)
	}
	return nil, statusErr(http.MethodPut, path, code, body)
}

// AddAddr puts addr (an IP, optionally with "/plen") on the DPVS device
// ifname (PUT /v2/device/{ifname}/addr). The agent answers 200 both when it
// added the address and when it was there already; anything else fails.
func (c *Client) AddAddr(ctx context.Context, ifname, addr string) error {
	return c.deviceAddr(ctx, http.MethodPut, ifname, addr)
}

// DelAddr removes addr from the DPVS device ifname (DELETE
// /v2/device/{ifname}/addr); 200 when deleted or absent.
func (c *Client) DelAddr(ctx context.Context, ifname, addr string) error {
	return c.deviceAddr(ctx, http.MethodDelete, ifname, addr)
}

func (c *Client) deviceAddr(ctx context.Context, method, ifname, addr string) error {
	if ifname == "" {
		return fmt.Errorf("dpvs-agent: %s device addr: empty device name", method)
	}
	if addr == "" {
		return fmt.Errorf("dpvs-agent: %s device %s addr: empty address", method, ifname)
	}
	path := "/v2/device/" + url.PathEscape(ifname) + "/addr"
	return c.expect(ctx, method, path, struct {
		Addr string `json:"addr"`
	}{addr}, http.StatusOK)
}

// PutVS creates or updates a service (PUT /v2/vs/{id}); 200 or 201.
func (c *Client) PutVS(ctx context.Context, vs subject.VSID, spec VirtualServerSpec) error {
	return c.expectVS(ctx, http.MethodPut, vs, "", spec, http.StatusOK, http.StatusCreated)
}

// DeleteVS deletes a service (DELETE /v2/vs/{id}); ErrNotFound on 404.
func (c *Client) DeleteVS(ctx context.Context, vs subject.VSID) error {
	return c.expectVS(ctx, http.MethodDelete, vs, "", nil, http.StatusOK)
}

// PutRS adds real servers or updates the listed ones (PUT /v2/vs/{id}/rs).
func (c *Client) PutRS(ctx context.Context, vs subject.VSID, rss []RealServer) error {
	return c.expectVS(ctx, http.MethodPut, vs, "/rs", rsList{Items: nonNil(rss)}, http.StatusOK)
}

// PostRS replaces the service's real servers (POST /v2/vs/{id}/rs).
func (c *Client) PostRS(ctx context.Context, vs subject.VSID, rss []RealServer) error {
	return c.expectVS(ctx, http.MethodPost, vs, "/rs", rsList{Items: nonNil(rss)}, http.StatusOK)
}

// DeleteRS deletes the listed real servers (DELETE /v2/vs/{id}/rs). The real
// agent keeps them in its listing (see package agenttest).
func (c *Client) DeleteRS(ctx context.Context, vs subject.VSID, rss []RealServer) error {
	return c.expectVS(ctx, http.MethodDelete, vs, "/rs", rsList{Items: nonNil(rss)}, http.StatusOK)
}

// rsList is the agent's RealServerTinyList request body.
type rsList struct {
	Items []RealServer `json:"Items"`
}

func nonNil(rss []RealServer) []RealServer {
	if rss == nil {
		return []RealServer{}
	}
	return rss
}

// vsPath builds /v2/vs/{id}{suffix}, refusing an incomplete service id.
func vsPath(vs subject.VSID, suffix string) (string, error) {
	if !vs.IsValid() {
		return "", fmt.Errorf("dpvs-agent: service %s: want an address and TCP or UDP", vs)
	}
	return "/v2/vs/" + PathID(vs) + suffix, nil
}

func (c *Client) expectVS(ctx context.Context, method string, vs subject.VSID, suffix string, in any, ok ...int) error {
	path, err := vsPath(vs, suffix)
	if err != nil {
		return err
	}
	return c.expect(ctx, method, path, in, ok...)
}

func (c *Client) expect(ctx context.Context, method, path string, in any, ok ...int) error {
	code, body, err := c.do(ctx, method, path, in)
	if err != nil {
		return err
	}
	for _, want := range ok {
		if code == want {
			return nil
		}
	}
	return statusErr(method, path, code, body)
}

// do sends one request with a JSON body (when in is not nil) and reads the
// whole response.
func (c *Client) do(ctx context.Context, method, path string, in any) (int, []byte, error) {
	if c.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	var rd io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return 0, nil, fmt.Errorf("dpvs-agent: %s %s: encode body: %w", method, path, err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return 0, nil, fmt.Errorf("dpvs-agent: %s %s: %w", method, path, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	if c.ua != "" {
		req.Header.Set("User-Agent", c.ua)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("dpvs-agent: %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		return 0, nil, fmt.Errorf("dpvs-agent: %s %s: read body: %w", method, path, err)
	}
	if len(body) > maxBody {
		return 0, nil, fmt.Errorf("dpvs-agent: %s %s: %w: body larger than %d bytes", method, path, ErrInvalid, maxBody)
	}
	return resp.StatusCode, body, nil
}

func statusErr(method, path string, code int, body []byte) error {
	return &StatusError{Method: method, Path: path, Code: code, Body: string(clip(bytes.TrimSpace(body)))}
}

// clip shortens a body quoted in an error.
func clip(b []byte) []byte {
	const n = 256
	if len(b) > n {
		return append(b[:n:n], "..."...)
	}
	return b
}
