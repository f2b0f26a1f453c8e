package httpfront

import (
	"bytes"
	"errors"
	"testing"
	"testing/iotest"
)

// FuzzReadHead: any bytes, on either kind of port, read one byte at a time, give a request or
// an *Error, never a panic; raw is a prefix of the input; an accepted request names a host,
// and its forwarded head parses to the same request.
func FuzzReadHead(f *testing.F) {
	for _, tc := range cases {
		f.Add([]byte(tc.head), tc.connect)
	}
	f.Fuzz(func(t *testing.T, in []byte, connect bool) {
		raw, req, err := ReadHead(iotest.OneByteReader(bytes.NewReader(in)), connect, 4096)
		if !bytes.HasPrefix(in, raw) {
			t.Fatalf("raw %q is not a prefix of the input", raw)
		}
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Reason == "" {
				t.Fatalf("error %v is not an *Error with a reason", err)
			}
			return
		}
		if (req.Name == "") == !req.Addr.IsValid() {
			t.Fatalf("request %+v names no host, or two", req)
		}
		if connect && req.Port == 0 {
			t.Fatalf("CONNECT %+v without a port", req)
		}
		fwd := Forward(raw[:req.Head], &req)
		again, err := Parse(fwd, connect)
		again.Head = req.Head
		if err != nil || again != req {
			t.Fatalf("forwarded head %q parses to %+v, %v; want %+v", fwd, again, err, req)
		}
	})
}
