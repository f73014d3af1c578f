package probe

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/healthmesh/healthmesh/shared/config"
	"github.com/healthmesh/healthmesh/shared/event"
	"golang.org/x/net/http/httpguts"
)

// MaxBodyMatch is how much of a response body response-regex is matched
// against: enough for any health page, bounded so a large body costs little.
const MaxBodyMatch = 64 << 10

// HTTPParams are the http method's parameters.
type HTTPParams struct {
	Method        string               // GET (default), PUT, POST or HEAD
	RequestURI    string               // origin-form path and query sent; "/" by default
	Host          string               // Host header and TLS SNI; "" = the backend's ip:port (no SNI)
	HTTPS         bool                 // TLS to the backend
	TLSSkipVerify bool                 // tls-verify: no
	Proxy         bool                 // absolute-form request: the backend is asked as an HTTP proxy
	ProxyProtocol ProxyProtocol        // PROXY header written right after connect, before TLS
	Header        http.Header          // request-headers
	Body          []byte               // request
	Codes         []config.StatusRange // response-codes; nil = config.DefaultResponseCodes
	Response      []byte               // the body must start with this
	ResponseRegex *regexp.Regexp       // response-regex: must match the body's first MaxBodyMatch bytes
}

func defaultCodes() []config.StatusRange {
	codes, _ := config.ParseResponseCodes(config.DefaultResponseCodes)
	return codes
}

// HTTP is the `http` method. It always connects to the target address; the
// Host header and SNI come from `host` (or an absolute `uri`), which DPVS
// wrongly used as the address to connect to. Redirects are not followed:
// a 3xx is judged by its own status code.
type HTTP struct {
	p      HTTPParams
	url    url.URL     // scheme, path and query; Host is set per probe
	header http.Header // shared read-only by all probes
	tr     *http.Transport
	bad    string // why the params cannot be used (reported as PROCERR by every probe)
}

// NewHTTP returns the http method for p. roots are the CAs trusted when
// verifying (nil = the system pool). Each probe uses a fresh connection (keep-alives
// are disabled: a health check must see whether a new client can connect).
func NewHTTP(p HTTPParams, roots *x509.CertPool) *HTTP {
	if p.Method == "" {
		p.Method = http.MethodGet
	}
	if p.RequestURI == "" {
		p.RequestURI = "/"
	}
	if p.Codes == nil {
		p.Codes = defaultCodes()
	}
	h := &HTTP{p: p, header: p.Header.Clone()}
	if u, err := url.ParseRequestURI(p.RequestURI); err == nil && u.Host == "" && u.Scheme == "" {
		h.url = *u
	} else {
		h.bad = fmt.Sprintf("http: request URI %q is not a path", p.RequestURI)
	}
	h.url.Scheme = "http"
	if p.HTTPS {
		h.url.Scheme = "https"
	}
	if h.header == nil {
		h.header = http.Header{}
	}
	if h.header.Get("User-Agent") == "" {
		h.header.Set("User-Agent", "healthmesh-prober")
	}
	h.tr = &http.Transport{
		DialContext: h.dial,
		TLSClientConfig: &tls.Config{
			ServerName:         sniOf(p.Host),
			InsecureSkipVerify: p.TLSSkipVerify, //nolint:gosec // the operator's tls-verify: no
			RootCAs:            roots,
		},
		DisableKeepAlives:      true,
		DisableCompression:     true, // the body is matched as the backend sent it
		MaxIdleConns:           1,
		MaxIdleConnsPerHost:    1,
		IdleConnTimeout:        time.Second,
		MaxResponseHeaderBytes: MaxBodyMatch,
	}
	if p.Proxy {
		// The "proxy" is the backend itself; dial ignores the address.
		h.tr.Proxy = func(r *http.Request) (*url.URL, error) {
			return &url.URL{Scheme: "http", Host: r.URL.Host}, nil
		}
	}
	return h
}

// Close releases the transport's resources.
func (h *HTTP) Close() error {
	h.tr.CloseIdleConnections()
	return nil
}

// sniOf returns the TLS server name for a Host header value: its host part.
func sniOf(host string) string {
	if host == "" {
		return ""
	}
	if hn, _, err := net.SplitHostPort(host); err == nil {
		return hn
	}
	return strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
}

func parseHTTPParams(params map[string]string) (HTTPParams, error) {
	const m = MethodHTTP
	p := HTTPParams{Method: http.MethodGet, RequestURI: "/"}
	var uriHost, headerHost string
	var uriHTTPS, httpsParam bool
	for _, k := range sortedKeys(params) {
		v := params[k]
		var err error
		switch k {
		case "method":
			switch v {
			case http.MethodGet, http.MethodPut, http.MethodPost, http.MethodHead:
				p.Method = v
			default:
				err = paramErr(m, k, "want GET, PUT, POST or HEAD (upper case), got %q", v)
			}
		case "host":
			if err = nonEmpty(m, k, v); err == nil && !httpguts.ValidHostHeader(v) {
				err = paramErr(m, k, "%q is not a valid Host header value", v)
			}
			p.Host = v
		case "uri":
			p.RequestURI, uriHost, uriHTTPS, err = parseURI(k, v)
		case "https":
			httpsParam, err = parseBool(m, k, v)
		case "tls-verify":
			var verify bool
			verify, err = parseBool(m, k, v)
			p.TLSSkipVerify = !verify
		case "proxy":
			p.Proxy, err = parseBool(m, k, v)
		case "proxy-protocol":
			p.ProxyProtocol, err = parseProxyProtocol(m, k, v, true)
		case "request-headers":
			p.Header, headerHost, err = parseHeaders(k, v)
		case "request":
			err = nonEmpty(m, k, v)
			p.Body = []byte(v)
		case "response-codes":
			if p.Codes, err = config.ParseResponseCodes(v); err != nil {
				err = paramErr(m, k, "%v", err)
			}
		case "response":
			err = nonEmpty(m, k, v)
			p.Response = []byte(v)
		case "response-regex":
			if err = nonEmpty(m, k, v); err == nil {
				if p.ResponseRegex, err = regexp.Compile(v); err != nil {
					err = paramErr(m, k, "%v", err)
				}
			}
		default:
			err = unknownKey(m, k, "method", "host", "uri", "https", "tls-verify", "proxy", "proxy-protocol",
				"request-headers", "request", "response-codes", "response", "response-regex")
		}
		if err != nil {
			return HTTPParams{}, err
		}
	}
	p.HTTPS = httpsParam || uriHTTPS
	// The Host header: `host`, else a Host in request-headers, else the host
	// of an absolute uri, else (empty) the backend's ip:port.
	for _, h := range []string{p.Host, headerHost, uriHost} {
		if h != "" {
			p.Host = h
			break
		}
	}
	return p, nil
}

// parseURI accepts a path ("/healthz?x=1") or an absolute http(s) URL, whose
// host becomes the default Host header (the connection still goes to the
// backend) and whose https scheme turns TLS on.
func parseURI(key, v string) (reqURI, host string, https bool, err error) {
	if err := nonEmpty(MethodHTTP, key, v); err != nil {
		return "", "", false, err
	}
	u, perr := url.Parse(v)
	bad := paramErr(MethodHTTP, key, "want a path starting with '/' or an absolute http(s) URL, got %q", v)
	switch {
	case perr != nil:
		return "", "", false, paramErr(MethodHTTP, key, "%v", perr)
	case u.Scheme == "http" || u.Scheme == "https":
		if u.Host == "" || u.User != nil {
			return "", "", false, bad
		}
		host, https = u.Host, u.Scheme == "https"
	case u.Scheme != "" || u.Host != "" || !strings.HasPrefix(v, "/"):
		return "", "", false, bad
	}
	reqURI = u.EscapedPath()
	if reqURI == "" {
		reqURI = "/"
	}
	if u.RawQuery != "" {
		reqURI += "?" + u.RawQuery
	}
	return reqURI, host, https, nil
}

// parseHeaders parses DPVS's "K::V;;K::V" (config.ParseRequestHeaders). A
// Host header is returned apart: Go sends the Host header from Request.Host
// only.
func parseHeaders(key, v string) (http.Header, string, error) {
	hs, err := config.ParseRequestHeaders(v)
	if err != nil {
		return nil, "", paramErr(MethodHTTP, key, "%v", err)
	}
	h := http.Header{}
	var host string
	for _, kv := range hs {
		switch {
		case !httpguts.ValidHeaderFieldName(kv.Name):
			return nil, "", paramErr(MethodHTTP, key, "%q is not a valid header name", kv.Name)
		case !httpguts.ValidHeaderFieldValue(kv.Value):
			return nil, "", paramErr(MethodHTTP, key, "header %s: invalid value %q", kv.Name, kv.Value)
		case strings.EqualFold(kv.Name, "Host"):
			host = kv.Value
		default:
			h.Add(kv.Name, kv.Value)
		}
	}
	return h, host, nil
}

func (h *HTTP) codeOK(code int) bool {
	for _, r := range h.p.Codes {
		if r.Contains(code) {
			return true
		}
	}
	return false
}

// httpProbe is what one probe's dial and trace hooks record; the transport
// calls them on its own goroutines, so it is guarded by mu.
type httpProbe struct {
	target   *Target
	deadline time.Time

	mu         sync.Mutex
	dialErr    error // connect or PROXY-header failure
	connected  bool  // TCP connected and PROXY header written
	tlsStarted bool
	tlsDone    bool
	tlsErr     error
}

type httpProbeKey struct{}

func (st *httpProbe) trace() *httptrace.ClientTrace {
	return &httptrace.ClientTrace{
		TLSHandshakeStart: func() {
			st.mu.Lock()
			st.tlsStarted = true
			st.mu.Unlock()
		},
		TLSHandshakeDone: func(_ tls.ConnectionState, err error) {
			st.mu.Lock()
			st.tlsDone, st.tlsErr = true, err
			st.mu.Unlock()
		},
	}
}

// dial connects to the probe's target whatever addr the transport asks for
// (the URL host, or the "proxy"), from its source and netns, and writes the
// PROXY header. The deadline set on the connection bounds the TLS handshake,
// the request and the response even where the transport's own contexts do
// not reach.
func (h *HTTP) dial(ctx context.Context, _, _ string) (net.Conn, error) {
	st, ok := ctx.Value(httpProbeKey{}).(*httpProbe)
	if !ok {
		return nil, errors.New("probe: http: dial outside a probe")
	}
	dctx, cancel := context.WithDeadline(ctx, st.deadline)
	defer cancel()
	c, err := dialConn(dctx, "tcp", st.target)
	if err == nil {
		_ = c.SetDeadline(st.deadline)
		if h.p.ProxyProtocol != ProxyNone {
			if _, err = c.Write(proxyHeader(h.p.ProxyProtocol, c, false)); err != nil {
				c.Close()
				err = fmt.Errorf("proxy-protocol header: %w", err)
			}
		}
	}
	st.mu.Lock()
	st.dialErr, st.connected = err, err == nil
	st.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return c, nil
}

// Probe implements Prober.
//
// Connect failures → Down L4CON / L4TOUT; TLS failures → Down L6RSP, a
// handshake that does not finish in time → L6TOUT; no response in time →
// L7TOUT, an invalid one → L7RSP; status outside response-codes → L7STS;
// body not starting with response or not matching response-regex → L7RSP;
// else Up L7OK.
func (h *HTTP) Probe(ctx context.Context, t *Target) Result {
	return run(ctx, t, true, func(pctx context.Context, start time.Time) Result {
		if h.bad != "" {
			return procErr(0, h.bad)
		}
		return h.probe(pctx, t, start)
	})
}

func (h *HTTP) probe(ctx context.Context, t *Target, start time.Time) Result {
	deadline, _ := ctx.Deadline()
	st := &httpProbe{target: t, deadline: deadline}
	ctx = httptrace.WithClientTrace(context.WithValue(ctx, httpProbeKey{}, st), st.trace())

	u := h.url
	u.Host = dest(t).String()
	req := (&http.Request{
		Method:     h.p.Method,
		URL:        &u,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     h.header,
		Host:       h.p.Host,
	}).WithContext(ctx)
	if len(h.p.Body) > 0 {
		req.Body = io.NopCloser(bytes.NewReader(h.p.Body))
		req.ContentLength = int64(len(h.p.Body))
	}
	resp, err := h.tr.RoundTrip(req)
	if err != nil {
		return st.failure(err, time.Since(start))
	}
	defer resp.Body.Close()
	return h.judge(ctx, resp, start)
}

func (h *HTTP) judge(ctx context.Context, resp *http.Response, start time.Time) Result {
	status := "status " + strconv.Itoa(resp.StatusCode)
	if !h.codeOK(resp.StatusCode) {
		return down(event.ReasonL7STS, time.Since(start), status)
	}
	limit := len(h.p.Response)
	if h.p.ResponseRegex != nil {
		limit = max(limit, MaxBodyMatch)
	}
	if limit == 0 {
		return up(event.ReasonL7OK, time.Since(start), status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, int64(limit)))
	rtt := time.Since(start)
	if err != nil {
		err = ctxErr(ctx, err)
		switch {
		case errors.Is(err, context.Canceled):
			return procErr(rtt, "probe canceled")
		case isTimeout(err):
			return down(event.ReasonL7TOUT, rtt, status+", body read timeout")
		}
		return down(event.ReasonL7RSP, rtt, status+", body: "+errDetail(err))
	}
	if !bytes.HasPrefix(body, h.p.Response) {
		return down(event.ReasonL7RSP, rtt, status+", body does not start with response")
	}
	if h.p.ResponseRegex != nil && !h.p.ResponseRegex.Match(body) {
		return down(event.ReasonL7RSP, rtt, status+", body does not match response-regex")
	}
	return up(event.ReasonL7OK, rtt, status)
}

// failure classifies a failed round trip by how far the exchange got.
func (st *httpProbe) failure(err error, rtt time.Duration) Result {
	st.mu.Lock()
	defer st.mu.Unlock()
	switch {
	case errors.Is(err, context.Canceled):
		return procErr(rtt, "probe canceled")
	case !st.connected && isTimeout(err):
		return down(event.ReasonL4TOUT, rtt, "connect timeout")
	case !st.connected && st.dialErr != nil:
		return connFailure(st.dialErr, rtt)
	case !st.connected:
		return connFailure(err, rtt)
	case st.tlsStarted && (!st.tlsDone || st.tlsErr != nil):
		if isTimeout(err) || isTimeout(st.tlsErr) {
			return down(event.ReasonL6TOUT, rtt, "tls handshake timeout")
		}
		if st.tlsErr != nil {
			err = st.tlsErr
		}
		return down(event.ReasonL6RSP, rtt, err.Error())
	case isTimeout(err):
		return down(event.ReasonL7TOUT, rtt, "no response")
	}
	return down(event.ReasonL7RSP, rtt, "no valid response: "+errDetail(err))
}
