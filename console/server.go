// Package console is lnm's web console: server-rendered pages (html/template, embedded) over
// HTTPS that show what the box decided and let an admin change the list and the mode. Every
// page reads the admin API through adminapi.Client, the same types the CLI uses; the console
// holds no data of its own but its users file, its certificate and its sessions.
//
// Users and bcrypt hashes live in DIR/users (`lnm console passwd USER`); a viewer sees
// everything, an admin also changes things. Sessions are random tokens in HttpOnly, Secure,
// SameSite=Strict cookies, held in memory; every change carries the session's CSRF token
// (the sign-in form a double-submit one); failed sign-ins are slowed down per source. Every
// change goes to the admin API with the user's name (adminapi.HeaderUser), so the box records
// it in the audit trail beside the console's uid.
package console

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/lnm-project/lnm/adminapi"
)

// Options configure a console. Dir and Admin are required.
type Options struct {
	// Dir holds the users file and, unless CertFile is set, the self-signed certificate
	// generated at first start (cert.pem, key.pem).
	Dir string
	// CertFile and KeyFile are a configured certificate; empty: the generated one.
	CertFile, KeyFile string
	// Admin is the box's admin API.
	Admin *adminapi.Client
	// Box names the box in page titles; empty: "lnm".
	Box string
	// Log receives the console's errors; nil: slog.Default().
	Log *slog.Logger
	// Now is the clock; nil: time.Now.
	Now func() time.Time
}

// Server is a running console.
type Server struct {
	opt      Options
	users    string // the users file
	sessions sessions
	throttle throttle
	log      *slog.Logger
	handler  http.Handler
	srv      *http.Server
	addr     string // where Listen bound; empty before
	live     liveCount
}

// New returns a console for opt; Serve serves it.
func New(opt Options) (*Server, error) {
	if opt.Dir == "" || opt.Admin == nil {
		return nil, errors.New("console: Dir and Admin are required")
	}
	if opt.Box == "" {
		opt.Box = "lnm"
	}
	if opt.Log == nil {
		opt.Log = slog.Default()
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	s := &Server{opt: opt, users: filepath.Join(opt.Dir, UsersFile), log: opt.Log}
	s.handler = s.routes()
	return s, nil
}

// Handler is the console's HTTP handler (the tests serve it with their own TLS server).
func (s *Server) Handler() http.Handler { return s.handler }

// Cert file names in Dir.
const (
	certName = "cert.pem"
	keyName  = "key.pem"
)

// TLSConfig loads the configured certificate, or the generated one in Dir, generating it
// first when there is none.
func (s *Server) TLSConfig() (*tls.Config, error) {
	certFile, keyFile := s.opt.CertFile, s.opt.KeyFile
	if certFile == "" {
		certFile, keyFile = filepath.Join(s.opt.Dir, certName), filepath.Join(s.opt.Dir, keyName)
		if _, err := os.Stat(certFile); errors.Is(err, os.ErrNotExist) {
			if err := SelfSigned(certFile, keyFile, s.opt.Box, s.opt.Now()); err != nil {
				return nil, err
			}
			s.log.Info("console: generated a self-signed certificate", "cert", certFile)
		}
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("console: certificate: %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// SelfSigned writes a new self-signed ECDSA P-256 certificate for name, valid ten years,
// and its key (mode 0600).
func SelfSigned(certFile, keyFile, name string, now time.Time) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("console: key: %w", err)
	}
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name + " lnm console"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.AddDate(10, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{name, "localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return fmt.Errorf("console: certificate: %w", err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return fmt.Errorf("console: key: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(certFile), 0o700); err != nil {
		return fmt.Errorf("console: %w", err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		return fmt.Errorf("console: key: %w", err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return fmt.Errorf("console: certificate: %w", err)
	}
	return nil
}

// Listen binds addr and serves the console over TLS until Close.
func (s *Server) Listen(addr string) error {
	cfg, err := s.TLSConfig()
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("console: %w", err)
	}
	s.addr = ln.Addr().String()
	s.srv = &http.Server{
		Handler:           s.handler,
		TLSConfig:         cfg,
		ReadHeaderTimeout: 10 * time.Second,
		MaxHeaderBytes:    64 << 10,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	go func() {
		if err := s.srv.ServeTLS(ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("console stopped", "err", err)
		}
	}()
	return nil
}

// Close stops the server; Live pages are cut.
func (s *Server) Close() error {
	if s.srv == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := s.srv.Shutdown(ctx); err != nil {
		return s.srv.Close()
	}
	return nil
}
