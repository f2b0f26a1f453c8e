package adminapi

import (
	"bufio"
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

	"github.com/lnm-project/lnm/audit"
)

// DialTimeout bounds connecting to the admin socket: a local socket answers at once or not at
// all.
const DialTimeout = 3 * time.Second

// Client speaks the admin API over the box's Unix socket. Its methods are safe for concurrent
// use; Close drops the connections kept for reuse.
type Client struct {
	socket string
	http   *http.Client
	user   string // sent as HeaderUser; empty: none
}

// As returns a client sharing c's connections whose requests name user (HeaderUser), as the
// web console does for the person signed in. The box records the name beside the socket
// peer's uid.
func (c *Client) As(user string) *Client {
	cc := *c
	cc.user = user
	return &cc
}

// NewClient returns a client for the box listening on socket. It connects on first use.
func NewClient(socket string) *Client {
	d := net.Dialer{Timeout: DialTimeout}
	return &Client{
		socket: socket,
		http: &http.Client{Transport: &http.Transport{
			// The URL's host is ignored: every request goes to the socket.
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return d.DialContext(ctx, "unix", socket)
			},
			DisableCompression: true,
		}},
	}
}

// Close drops the connections kept for reuse.
func (c *Client) Close() { c.http.CloseIdleConnections() }

// UnreachableError means nothing answered on the socket: the box is not running, or the
// socket is not this user's to open (Err says which). Callers may fall back to the files.
type UnreachableError struct {
	Socket string
	Err    error
}

func (e *UnreachableError) Error() string {
	return fmt.Sprintf("lnm is not running or not reachable at %s: %v", e.Socket, e.Err)
}
func (e *UnreachableError) Unwrap() error { return e.Err }

// StatusError is an answer other than 200: the status code and the APIError's message.
type StatusError struct {
	Code int
	Msg  string
}

func (e *StatusError) Error() string { return e.Msg }

// ErrCut means an answer ended mid-record or mid-chunk, as when the box stops.
var ErrCut = errors.New("admin API: the answer was cut short (lnm stopped?)")

// send sends one request with an optional JSON body. It returns the response of a 200; any
// other status is a *StatusError, a failed dial an *UnreachableError.
func (c *Client) send(ctx context.Context, method, path string, v url.Values, body any) (*http.Response, error) {
	u := url.URL{Scheme: "http", Host: "lnm", Path: path}
	if len(v) > 0 {
		u.RawQuery = v.Encode()
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("admin API %s: %w", path, err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return nil, fmt.Errorf("admin API %s: %w", path, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.user != "" {
		req.Header.Set(HeaderUser, c.user)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "dial" {
			return nil, &UnreachableError{c.socket, op.Err}
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("admin API at %s: %w", c.socket, err)
	}
	if resp.StatusCode == http.StatusOK {
		return resp, nil
	}
	defer resp.Body.Close()
	errBody, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var apiErr APIError
	msg := strings.TrimSpace(string(errBody))
	if json.Unmarshal(errBody, &apiErr) == nil && apiErr.Error != "" {
		msg = apiErr.Error
	}
	if msg == "" {
		msg = resp.Status
	}
	return nil, &StatusError{Code: resp.StatusCode, Msg: msg}
}

// call sends one request and decodes the 200 answer into out. A status other than 200 is
// wrapped with the path and code, unless bare is set (the allow edits show the box's message
// as it is and decide the exit code on StatusError.Code).
func (c *Client) call(ctx context.Context, method, path string, v url.Values, body, out any, bare bool) error {
	resp, err := c.send(ctx, method, path, v, body)
	var se *StatusError
	if !bare && errors.As(err, &se) {
		return fmt.Errorf("admin API %s: %w (HTTP %d)", path, err, se.Code)
	}
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("admin API %s: %w", path, err)
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("admin API %s: %w", path, err)
	}
	return nil
}

// Records sends the query to GET /v1/audit and calls fn with each record as it is read.
func (c *Client) Records(ctx context.Context, q Query, fn func(*audit.Record) error) error {
	resp, err := c.get(ctx, PathAudit, q.Values())
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return ReadRecords(resp.Body, fn)
}

// Follow streams GET /v1/audit/follow into fn until the box closes the stream (nil), ctx ends
// (ctx.Err()) or fn fails. started is called once the box accepted the request.
func (c *Client) Follow(ctx context.Context, f audit.Filter, started func() error, fn func(*audit.Record) error) error {
	resp, err := c.get(ctx, PathAuditFollow, Query{Filter: f}.Values())
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := started(); err != nil {
		return err
	}
	err = ReadRecords(resp.Body, fn)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if errors.Is(err, ErrCut) {
		return nil // the box stopped: its followers are cut, not ended
	}
	return err
}

// get sends GET path?v and returns the response of a 200, other statuses as errors naming
// the path.
func (c *Client) get(ctx context.Context, path string, v url.Values) (*http.Response, error) {
	resp, err := c.send(ctx, http.MethodGet, path, v, nil)
	var se *StatusError
	if errors.As(err, &se) {
		return nil, fmt.Errorf("admin API %s: %w (HTTP %d)", path, err, se.Code)
	}
	return resp, err
}

// Status fetches GET /v1/status: the document as sent, and decoded.
func (c *Client) Status(ctx context.Context) ([]byte, *Status, error) {
	resp, err := c.get(ctx, PathStatus, nil)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, nil, fmt.Errorf("admin API %s: %w", PathStatus, err)
	}
	var st Status
	if err := json.Unmarshal(body, &st); err != nil {
		return nil, nil, fmt.Errorf("admin API %s: bad status document: %w", PathStatus, err)
	}
	return bytes.TrimSpace(body), &st, nil
}

// Reload asks the box to read its config file again (POST /v1/reload).
func (c *Client) Reload(ctx context.Context) (ReloadReply, error) {
	var out ReloadReply
	return out, c.call(ctx, http.MethodPost, PathReload, nil, nil, &out, false)
}

// SetMode switches the box to learn or enforce mode (POST /v1/mode).
func (c *Client) SetMode(ctx context.Context, learn bool) (ModeReply, error) {
	mode := "enforce"
	if learn {
		mode = "learn"
	}
	var out ModeReply
	return out, c.call(ctx, http.MethodPost, PathMode, url.Values{"mode": {mode}}, nil, &out, false)
}

// AllowList fetches the running rules with their hits (GET /v1/allow).
func (c *Client) AllowList(ctx context.Context) (AllowList, error) {
	var out AllowList
	return out, c.call(ctx, http.MethodGet, PathAllow, nil, nil, &out, true)
}

// AllowAdd adds rules through the box (POST /v1/allow). A refused edit is a *StatusError with
// the box's message: 422 for a rule or file the box refused.
func (c *Client) AllowAdd(ctx context.Context, add AllowAdd) (AllowChange, error) {
	var out AllowChange
	return out, c.call(ctx, http.MethodPost, PathAllow, nil, add, &out, true)
}

// AllowRemove removes the managed rules with pattern through the box (DELETE /v1/allow): a
// *StatusError 409 when only the config file has it, 404 when no rule has it.
func (c *Client) AllowRemove(ctx context.Context, pattern string) (AllowChange, error) {
	var out AllowChange
	return out, c.call(ctx, http.MethodDelete, PathAllow, url.Values{"pattern": {pattern}}, nil, &out, true)
}

// MaxRecordLine bounds one JSON line from the box; records are a few hundred bytes.
const MaxRecordLine = 1 << 20

// ReadRecords decodes JSON Lines until the answer ends. fn sees only whole records; an answer
// cut short returns ErrCut after them.
func ReadRecords(r io.Reader, fn func(*audit.Record) error) error {
	br := bufio.NewReaderSize(r, 64<<10)
	var long []byte // a line longer than the buffer, being assembled
	for {
		chunk, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			if long = append(long, chunk...); len(long) > MaxRecordLine {
				return fmt.Errorf("admin API: a record longer than %d bytes", MaxRecordLine)
			}
			continue
		}
		switch {
		case err == io.EOF && len(chunk) == 0 && long == nil:
			return nil
		case err == io.EOF, errors.Is(err, io.ErrUnexpectedEOF):
			return ErrCut
		case err != nil:
			return fmt.Errorf("admin API: reading records: %w", err)
		}
		line := chunk
		if long != nil {
			line, long = append(long, chunk...), nil
		}
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		var rec audit.Record
		if err := rec.UnmarshalJSON(line); err != nil {
			return fmt.Errorf("admin API: bad record: %w", err)
		}
		if err := fn(&rec); err != nil {
			return err
		}
	}
}

// DHCPLeases asks GET /v1/dhcp/leases for the DHCP server's leases.
func (c *Client) DHCPLeases(ctx context.Context) (DHCPLeases, error) {
	var out DHCPLeases
	return out, c.call(ctx, http.MethodGet, PathDHCPLeases, nil, nil, &out, false)
}
