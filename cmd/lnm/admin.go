package main

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

	"github.com/lnm-project/lnm/appliance"
	"github.com/lnm-project/lnm/audit"
)

// adminDialTimeout bounds connecting to the admin socket: a local socket answers at once or
// not at all.
const adminDialTimeout = 3 * time.Second

// adminClient speaks the admin API (appliance/adminapi.go) over the box's Unix socket.
type adminClient struct {
	socket string
	http   *http.Client
}

func newAdminClient(socket string) *adminClient {
	d := net.Dialer{Timeout: adminDialTimeout}
	return &adminClient{
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

// close drops the connections kept for reuse.
func (c *adminClient) close() { c.http.CloseIdleConnections() }

// unreachableError means nothing answered on the socket: the box is not running, or the
// socket is not ours to open. Callers may fall back to the audit log files.
type unreachableError struct {
	socket string
	err    error
}

func (e *unreachableError) Error() string {
	return fmt.Sprintf("lnm is not running or not reachable at %s: %v", e.socket, e.err)
}
func (e *unreachableError) Unwrap() error { return e.err }

// get sends GET path?v and returns the response of a 200; any other status becomes an error
// carrying the API's message.
func (c *adminClient) get(ctx context.Context, path string, v url.Values) (*http.Response, error) {
	return c.do(ctx, http.MethodGet, path, v, nil)
}

// do sends one request with an optional JSON body and returns the response of a 200.
func (c *adminClient) do(ctx context.Context, method, path string, v url.Values, body io.Reader) (*http.Response, error) {
	u := url.URL{Scheme: "http", Host: "lnm", Path: path}
	if len(v) > 0 {
		u.RawQuery = v.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if err != nil {
		return nil, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "dial" {
			return nil, &unreachableError{c.socket, op.Err}
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
	var apiErr appliance.APIError
	msg := strings.TrimSpace(string(errBody))
	if json.Unmarshal(errBody, &apiErr) == nil && apiErr.Error != "" {
		msg = apiErr.Error
	}
	if msg == "" {
		msg = resp.Status
	}
	return nil, fmt.Errorf("admin API %s: %s (HTTP %d)", path, msg, resp.StatusCode)
}

// records sends the query to GET /v1/audit and calls fn with each record as it is read.
func (c *adminClient) records(ctx context.Context, q appliance.Query, fn func(*audit.Record) error) error {
	resp, err := c.get(ctx, appliance.PathAudit, q.Values())
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return readRecords(resp.Body, fn)
}

// follow streams GET /v1/audit/follow into fn until the box closes the stream (nil), ctx ends
// (ctx.Err()) or fn fails. started is called once the box accepted the request.
func (c *adminClient) follow(ctx context.Context, f audit.Filter, started func() error, fn func(*audit.Record) error) error {
	resp, err := c.get(ctx, appliance.PathAuditFollow, appliance.Query{Filter: f}.Values())
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := started(); err != nil {
		return err
	}
	err = readRecords(resp.Body, fn)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if errors.Is(err, errCut) {
		return nil // the box stopped: its followers are cut, not ended
	}
	return err
}

// status fetches GET /v1/status: the document as sent, and decoded.
func (c *adminClient) status(ctx context.Context) ([]byte, *appliance.Status, error) {
	resp, err := c.get(ctx, appliance.PathStatus, nil)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, nil, fmt.Errorf("admin API %s: %w", appliance.PathStatus, err)
	}
	var st appliance.Status
	if err := json.Unmarshal(body, &st); err != nil {
		return nil, nil, fmt.Errorf("admin API %s: bad status document: %w", appliance.PathStatus, err)
	}
	return bytes.TrimSpace(body), &st, nil
}

// maxRecordLine bounds one JSON line from the box; records are a few hundred bytes.
const maxRecordLine = 1 << 20

// errCut: the answer ended mid-record or mid-chunk, as when the box stops.
var errCut = errors.New("admin API: the answer was cut short (lnm stopped?)")

// readRecords decodes JSON Lines until the answer ends. fn sees only whole records; an
// answer cut short returns errCut after them.
func readRecords(r io.Reader, fn func(*audit.Record) error) error {
	br := bufio.NewReaderSize(r, 64<<10)
	var long []byte // a line longer than the buffer, being assembled
	for {
		chunk, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			if long = append(long, chunk...); len(long) > maxRecordLine {
				return fmt.Errorf("admin API: a record longer than %d bytes", maxRecordLine)
			}
			continue
		}
		switch {
		case err == io.EOF && len(chunk) == 0 && long == nil:
			return nil
		case err == io.EOF, errors.Is(err, io.ErrUnexpectedEOF):
			return errCut
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
