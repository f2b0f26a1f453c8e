package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"time"
)

// backendName is the name every proxied connection asks for; the allow rules of every proxy
// cover *.bench.test and the backend's certificate is for it.
const backendName = "app.bench.test"

// pki is the benchmark's own CA and the backend's certificate, written to dir so the backend
// child process reads them. Nothing leaves the temp dir.
type pki struct {
	roots    *x509.CertPool
	certFile string
	keyFile  string
}

// newPKI makes a P-256 CA and a leaf for *.bench.test and bench.test. ECDSA P-256 keeps the
// server's handshake signature cheap, as most real servers' are.
func newPKI(dir string) (*pki, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("bench: ca key: %w", err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "lnm bench CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(48 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("bench: ca cert: %w", err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("bench: leaf key: %w", err)
	}
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: backendName},
		DNSNames:     []string{"*.bench.test", "bench.test"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(48 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("bench: leaf cert: %w", err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("bench: leaf key: %w", err)
	}
	p := &pki{roots: x509.NewCertPool(), certFile: filepath.Join(dir, "backend.crt"), keyFile: filepath.Join(dir, "backend.key")}
	p.roots.AddCert(ca)
	if err := os.WriteFile(p.certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leafDER}), 0o600); err != nil {
		return nil, fmt.Errorf("bench: write cert: %w", err)
	}
	if err := os.WriteFile(p.keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return nil, fmt.Errorf("bench: write key: %w", err)
	}
	return p, nil
}

// clientConfig is the load generator's TLS config: full handshakes only (no session cache),
// TLS 1.3, and either Go's default key shares (X25519MLKEM768 first) or X25519 alone.
func (p *pki) clientConfig(x25519Only bool) *tls.Config {
	c := &tls.Config{RootCAs: p.roots, ServerName: backendName, MinVersion: tls.VersionTLS13}
	if x25519Only {
		c.CurvePreferences = []tls.CurveID{tls.X25519}
	}
	return c
}
