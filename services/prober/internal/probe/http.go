package probe

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
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
//
// It speaks HTTP/1.1 itself on one fresh connection per probe (a health
// check must see whether a new client can connect), on the probe's own
// goroutine: net/http's Transport costs a transport per target (kilobytes
// each, thousands of targets), two goroutines and several channels per
// connection, which made it the most expensive method by far. The request is
// built once; parsing the response is still net/http's.
//
// One exists per target, so it keeps only what probes use.
type HTTP struct {
	p      HTTPParams              // Header is folded into tail and dropped
	scheme string                  // http or https
	reqURI string                  // request-target in origin form
	tail   []byte                  // the request after the Host line: headers, blank line, body
	tls    *tls.Config             // for a configured host (ServerName set); nil without https
	ipTLS  atomic.Pointer[hostTLS] // without a host: ServerName = the target IP, kept for the next probe
	bad    string                  // why the params cannot be used (reported as PROCERR by every probe)
}

// hostTLS is a TLS config for one server name.
type hostTLS struct {
	name string
	cfg  *tls.Config
}

// NewHTTP returns the http method for p. roots are the CAs trusted when
// verifying (nil = the system pool).
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
	h := &HTTP{p: p, scheme: "http", reqURI: "/"}
	if u, err := url.ParseRequestURI(p.RequestURI); err == nil && u.Host == "" && u.Scheme == "" {
		h.reqURI = u.RequestURI()
	} else {
		h.bad = fmt.Sprintf("http: request URI %q is not a path", p.RequestURI)
	}
	if p.HTTPS {
		h.scheme = "https"
		h.tls = &tls.Config{
			ServerName:         sniOf(p.Host),
			InsecureSkipVerify: p.TLSSkipVerify, //nolint:gosec // the operator's tls-verify: no
			RootCAs:            roots,
		}
	}
	h.tail = requestTail(p)
	h.p.Header = nil
	return h
}

// requestTail renders what follows the Host line: User-Agent (unless the
// operator set one), the request-headers in sorted order, Connection: close
// (no keep-alive, as said), Content-Length when there is a body, the blank
// line and the body.
func requestTail(p HTTPParams) []byte {
	hdr := p.Header.Clone()
	if hdr == nil {
		hdr = http.Header{}
	}
	if hdr.Get("User-Agent") == "" {
		hdr.Set("User-Agent", "healthmesh-prober")
	}
	var b bytes.Buffer
	// Framing headers are ours to write; values were validated on parse.
	_ = hdr.WriteSubset(&b, map[string]bool{"Host": true, "Connection": true, "Content-Length": true,
		"Transfer-Encoding": true, "Trailer": true})
	b.WriteString("Connection: close\r\n")
	if len(p.Body) > 0 {
		b.WriteString("Content-Length: " + strconv.Itoa(len(p.Body)) + "\r\n")
	}
	b.WriteString("\r\n")
	b.Write(p.Body)
	return b.Bytes()
}

// request renders the request for the Host value host.
func (h *HTTP) request(host string) []byte {
	b := make([]byte, 0, len(h.p.Method)+len(h.reqURI)+2*len(host)+len(h.tail)+40)
	b = append(append(b, h.p.Method...), ' ')
	if h.p.Proxy && !h.p.HTTPS {
		// Absolute form: the backend is asked as an HTTP proxy (with https,
		// a CONNECT tunnel carries an origin-form request instead).
		b = append(append(append(b, h.scheme...), "://"...), host...)
	}
	b = append(b, h.reqURI...)
	b = append(append(append(b, " HTTP/1.1\r\nHost: "...), host...), "\r\n"...)
	return append(b, h.tail...)
}

// tlsConfig returns the TLS config for a probe of dst: the configured host's
// name, else the target IP (verified against the certificate's IP
// addresses; no SNI is sent for an IP).
func (h *HTTP) tlsConfig(dst string) *tls.Config {
	if h.tls.ServerName != "" {
		return h.tls
	}
	if c := h.ipTLS.Load(); c != nil && c.name == dst {
		return c.cfg
	}
	cfg := h.tls.Clone()
	cfg.ServerName = dst
	h.ipTLS.Store(&hostTLS{name: dst, cfg: cfg})
	return cfg
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
	c, err := dialConn(ctx, "tcp", t)
	if err != nil {
		return connFailure(ctxErr(ctx, err), time.Since(start))
	}
	defer closeReset(c)
	_ = c.SetDeadline(deadline) // bounds the handshake, the request and the response
	defer watchCtx(ctx, c)()
	if h.p.ProxyProtocol != ProxyNone {
		if _, err := c.Write(proxyHeader(h.p.ProxyProtocol, c, false)); err != nil {
			return connFailure(ctxErr(ctx, fmt.Errorf("proxy-protocol header: %w", err)), time.Since(start))
		}
	}
	dst := dest(t).String()
	host := h.p.Host
	if host == "" {
		host = dst
	}
	// Reads are bounded: response headers of MaxBodyMatch, and the body
	// judge reads, with room for the reader's buffer.
	lr := &io.LimitedReader{R: c, N: 2*MaxBodyMatch + 4096}
	br := bufio.NewReaderSize(lr, 1024) // longer lines are assembled by the parser
	var rw io.ReadWriter = c
	if h.p.Proxy && h.p.HTTPS {
		if r, ok := h.connect(ctx, c, br, dst, start); !ok {
			return r
		}
	}
	if h.p.HTTPS {
		tc := tls.Client(c, h.tlsConfig(dest(t).Addr().String()))
		if err := tc.Handshake(); err != nil {
			switch err = ctxErr(ctx, err); {
			case errors.Is(err, context.Canceled):
				return procErr(time.Since(start), "probe canceled")
			case isTimeout(err):
				return down(event.ReasonL6TOUT, time.Since(start), "tls handshake timeout")
			}
			return down(event.ReasonL6RSP, time.Since(start), err.Error())
		}
		rw, lr.R = tc, tc
		br.Reset(lr)
	}
	if _, err := rw.Write(h.request(host)); err != nil {
		return h.noResponse(ctx, err, time.Since(start))
	}
	resp, err := readResponse(br, &http.Request{Method: h.p.Method}) // HEAD: no body
	if err != nil {
		return h.noResponse(ctx, err, time.Since(start))
	}
	return h.judge(ctx, resp, start)
}

// readResponse reads the final response, skipping interim 1xx ones (but
// 101, which is final).
func readResponse(br *bufio.Reader, req *http.Request) (*http.Response, error) {
	for {
		resp, err := http.ReadResponse(br, req)
		if err != nil || resp.StatusCode >= 200 || resp.StatusCode < 100 || resp.StatusCode == http.StatusSwitchingProtocols {
			return resp, err
		}
	}
}

// connect opens a CONNECT tunnel to dst through the backend (https with
// proxy: the backend is an HTTP proxy), as net/http does for an https URL
// through a proxy. ok is false, with the result, when it failed.
func (h *HTTP) connect(ctx context.Context, c net.Conn, br *bufio.Reader, dst string, start time.Time) (Result, bool) {
	if _, err := io.WriteString(c, "CONNECT "+dst+" HTTP/1.1\r\nHost: "+dst+"\r\n\r\n"); err != nil {
		return h.noResponse(ctx, err, time.Since(start)), false
	}
	resp, err := readResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		return h.noResponse(ctx, err, time.Since(start)), false
	}
	if resp.StatusCode != http.StatusOK {
		return down(event.ReasonL7RSP, time.Since(start), "proxy CONNECT: status "+strconv.Itoa(resp.StatusCode)), false
	}
	if br.Buffered() > 0 {
		return down(event.ReasonL7RSP, time.Since(start), "proxy CONNECT: data before the TLS handshake"), false
	}
	return Result{}, true
}

// noResponse classifies a failure to send the request or read a response
// on an established connection.
func (h *HTTP) noResponse(ctx context.Context, err error, rtt time.Duration) Result {
	switch err = ctxErr(ctx, err); {
	case errors.Is(err, context.Canceled):
		return procErr(rtt, "probe canceled")
	case isTimeout(err):
		return down(event.ReasonL7TOUT, rtt, "no response")
	}
	return down(event.ReasonL7RSP, rtt, "no valid response: "+errDetail(err))
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
