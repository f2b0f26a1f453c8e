package httpfront

import (
	"bytes"
	"testing"
)

// BenchmarkReadHead: a typical device request (curl's head) read and parsed.
func BenchmarkReadHead(b *testing.B) {
	head := []byte("GET /firmware/v2.bin HTTP/1.1\r\nHost: updates.vendor.test\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n")
	b.SetBytes(int64(len(head)))
	b.ReportAllocs()
	for b.Loop() {
		_, req, err := ReadHead(bytes.NewReader(head), false, 0)
		if err != nil || req.Name == "" {
			b.Fatal(err)
		}
		Forward(head, &req)
	}
}

// BenchmarkReadConnect: the head curl and wget send to an HTTPS proxy.
func BenchmarkReadConnect(b *testing.B) {
	head := []byte("CONNECT api.contoso.test:443 HTTP/1.1\r\nHost: api.contoso.test:443\r\nUser-Agent: curl/7.88.1\r\nProxy-Connection: Keep-Alive\r\n\r\n")
	b.SetBytes(int64(len(head)))
	b.ReportAllocs()
	for b.Loop() {
		_, req, err := ReadHead(bytes.NewReader(head), true, 0)
		if err != nil || req.Port != 443 {
			b.Fatal(err)
		}
	}
}
