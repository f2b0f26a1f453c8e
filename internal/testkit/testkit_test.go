package testkit

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestMain(m *testing.M) { Main(m) }

func TestIssueVerifies(t *testing.T) {
	ca := NewCA(t)
	cert := ca.Issue(t, "a.example.test", "b.example.test")
	for _, tc := range []struct {
		name, host string
		ok         bool
	}{
		{"first name", "a.example.test", true},
		{"second name", "b.example.test", true},
		{"other name", "c.example.test", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := cert.Leaf.Verify(x509.VerifyOptions{DNSName: tc.host, Roots: ca.Pool})
			if (err == nil) != tc.ok {
				t.Errorf("verify %s: %v, want ok=%v", tc.host, err, tc.ok)
			}
		})
	}
	if _, err := cert.Leaf.Verify(x509.VerifyOptions{DNSName: "a.example.test", Roots: NewCA(t).Pool}); err == nil {
		t.Error("a certificate verified against another CA")
	}
}

func TestPEMLoads(t *testing.T) {
	ca := NewCA(t)
	certPEM, keyPEM := PEM(t, ca.Issue(t, "a.example.test"))
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatalf("X509KeyPair: %v", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca.CertPEM()) {
		t.Fatal("CertPEM does not parse")
	}
	leaf, _ := x509.ParseCertificate(pair.Certificate[0])
	if _, err := leaf.Verify(x509.VerifyOptions{DNSName: "a.example.test", Roots: pool}); err != nil {
		t.Errorf("PEM round trip does not verify: %v", err)
	}
}

func TestTLSEcho(t *testing.T) {
	NoLeaks(t)
	ca := NewCA(t)
	e := TLSEcho(t, "127.0.0.1:0", ca.Issue(t, "a.example.test", "b.example.test"))
	for _, name := range []string{"a.example.test", "b.example.test"} {
		c, err := tls.Dial("tcp", e.Addr().String(), ca.Client(name))
		if err != nil {
			t.Fatal(err)
		}
		for _, msg := range []string{"one", "two"} {
			io.WriteString(c, msg)
			want := name + ":" + msg
			buf := make([]byte, len(want))
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := io.ReadFull(c, buf); err != nil || string(buf) != want {
				t.Errorf("reply %q, %v; want %q", buf, err, want)
			}
		}
		c.Close()
	}
	if got := strings.Join(e.Seen(), " "); got != "a.example.test b.example.test" {
		t.Errorf("seen %q", got)
	}
}

// A handler blocked on a client that never leaves ends when the server closes.
func TestServerCloseEndsHandlers(t *testing.T) {
	NoLeaks(t)
	accepted := make(chan struct{})
	s := Serve(t, "127.0.0.1:0", func(c net.Conn) {
		close(accepted)
		io.Copy(io.Discard, c)
	})
	c, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	<-accepted
	done := make(chan struct{})
	go func() { s.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return while a handler was reading")
	}
	s.Close() // idempotent
	if c, err := net.Dial("tcp", s.Addr().String()); err == nil {
		c.Close()
		t.Error("still accepting after Close")
	}
}

func TestFreePort(t *testing.T) {
	port := FreePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("TCP: %v", err)
	}
	defer ln.Close()
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		t.Fatalf("UDP: %v", err)
	}
	pc.Close()
}

// recorder is a testing.TB that records failures instead of ending the test.
type recorder struct {
	testing.TB
	errors   []string
	cleanups []func()
}

func (r *recorder) Helper() {}
func (r *recorder) Errorf(format string, args ...any) {
	r.errors = append(r.errors, fmt.Sprintf(format, args...))
}
func (r *recorder) Fatalf(format string, args ...any) { r.Errorf(format, args...) }
func (r *recorder) Cleanup(f func())                  { r.cleanups = append(r.cleanups, f) }

func TestGolden(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "out.golden")
	os.WriteFile(path, []byte("a\nb\nc\n"), 0o644)
	for _, tc := range []struct {
		name, got, want string // want: a substring of the failure, "" for none
	}{
		{"same", "a\nb\nc\n", ""},
		{"changed line", "a\nB\nc\n", "differs from the output at line 2"},
		{"line added", "a\nb\nc\nd\n", "at line 4"},
		{"newline missing", "a\nb\nc", "at line 3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &recorder{TB: t}
			Golden(r, path, tc.got)
			switch {
			case tc.want == "" && len(r.errors) > 0:
				t.Errorf("failed: %v", r.errors)
			case tc.want != "" && (len(r.errors) != 1 || !strings.Contains(r.errors[0], tc.want)):
				t.Errorf("failures %q, want one containing %q", r.errors, tc.want)
			}
		})
	}
	t.Run("missing", func(t *testing.T) {
		r := &recorder{TB: t}
		Golden(r, filepath.Join(dir, "none.golden"), "x")
		if len(r.errors) == 0 || !strings.Contains(r.errors[0], "-update writes it") {
			t.Errorf("failures %q, want a hint at -update", r.errors)
		}
	})
	t.Run("update", func(t *testing.T) {
		defer func(saved bool) { *Update = saved }(*Update)
		*Update = true
		fresh := filepath.Join(dir, "sub", "new.golden")
		Golden(t, fresh, "new\n")
		if b, err := os.ReadFile(fresh); err != nil || string(b) != "new\n" {
			t.Errorf("-update wrote %q, %v", b, err)
		}
	})
}

func TestNoLeaksReportsAGoroutine(t *testing.T) {
	r := &recorder{TB: t}
	NoLeaks(r)
	stop := make(chan struct{})
	defer close(stop)
	go func() { <-stop }()
	for _, f := range r.cleanups {
		f()
	}
	if len(r.errors) != 1 || !strings.Contains(r.errors[0], "TestNoLeaksReportsAGoroutine") {
		t.Errorf("failures %q, want one naming the leaking goroutine's creator", r.errors)
	}
}
