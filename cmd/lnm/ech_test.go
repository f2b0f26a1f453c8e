package main

import (
	"crypto/ecdh"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/lnm-project/lnm/audit"
	"github.com/lnm-project/lnm/internal/testkit"
)

// echConfig builds one ECHConfig (draft-ietf-tls-esni, version 0xfe0d) for publicName with a
// fresh X25519 key, HKDF-SHA256 and AES-128-GCM, and returns the server's key and the
// client's ECHConfigList.
func echConfig(t *testing.T, publicName string) (tls.EncryptedClientHelloKey, []byte) {
	t.Helper()
	priv, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	u16 := func(b []byte, v int) []byte { return binary.BigEndian.AppendUint16(b, uint16(v)) }
	pub := priv.PublicKey().Bytes()
	var c []byte
	c = append(c, 7)      // config_id
	c = u16(c, 0x0020)    // kem_id: DHKEM(X25519, HKDF-SHA256)
	c = u16(c, len(pub))  // public_key
	c = append(c, pub...) //
	c = u16(c, 4)         // cipher_suites: one
	c = u16(c, 0x0001)    // kdf_id: HKDF-SHA256
	c = u16(c, 0x0001)    // aead_id: AES-128-GCM
	c = append(c, 0)      // maximum_name_length
	c = append(c, byte(len(publicName)))
	c = append(c, publicName...)
	c = u16(c, 0) // extensions: none
	config := u16(u16(nil, 0xfe0d), len(c))
	config = append(config, c...)
	list := u16(nil, len(config))
	list = append(list, config...)
	return tls.EncryptedClientHelloKey{Config: config, PrivateKey: priv.Bytes(), SendAsRetry: true}, list
}

// connRecords returns the box's conn records for sni, once there are at least n of them.
func connRecords(t *testing.T, box *loopbackBox, sni string, n int) []audit.Record {
	t.Helper()
	var recs []audit.Record
	if !waitFor(30*time.Second, func() bool {
		recs = recs[:0]
		audit.Read(filepath.Join(box.dir, "audit"), audit.Filter{Kind: audit.KindConn}, func(r *audit.Record) bool {
			if r.SNI == sni {
				recs = append(recs, *r)
			}
			return true
		})
		return len(recs) >= n
	}) {
		t.Fatalf("after 30 s the box recorded %d conn records for %s, want %d: %+v", len(recs), sni, n, recs)
	}
	return recs
}

// TestCase44ECHThroughTheBox is the faults catalog's case 44 through the built lnm: a real
// Encrypted Client Hello (Go's client and server, the inner name secret.test hidden in the
// outer hello for public.test) is decided on its outer name, recorded with that name and the
// ech flag, and spliced so that ECH works end to end; the same hello for a public name not on
// the list is denied and recorded the same way.
func TestCase44ECHThroughTheBox(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the lnm binary")
	}
	ca := testkit.NewCA(t)
	key, list := echConfig(t, "public.test")
	upstream := testkit.ServeTLS(t, "127.0.0.1:0", &tls.Config{
		Certificates:             []tls.Certificate{ca.Issue(t, "secret.test", "public.test")},
		EncryptedClientHelloKeys: []tls.EncryptedClientHelloKey{key},
	}, func(c *tls.Conn) {
		if c.Handshake() != nil {
			return
		}
		fmt.Fprintf(c, "inner:%s ech:%v", c.ConnectionState().ServerName, c.ConnectionState().ECHAccepted)
		c.CloseWrite()
	})
	bin := buildLNM(t)
	box := startLoopbackBox(t, bin, []string{fmt.Sprintf("public.test PROXY to 127.0.0.1:%d", upstream.Port())}, nil, nil)
	client := func(publicName string) *tls.Config {
		cfg := ca.Client("secret.test")
		cfg.MinVersion = tls.VersionTLS13
		cfg.EncryptedClientHelloConfigList = list
		if publicName != "public.test" {
			_, cfg.EncryptedClientHelloConfigList = echConfig(t, publicName)
		}
		return cfg
	}

	t.Run("allowed outer name", func(t *testing.T) {
		c, err := tls.Dial("tcp", box.proxyAddr(), client("public.test"))
		if err != nil {
			t.Fatalf("ECH through the box: %v", err)
		}
		defer c.Close()
		if !c.ConnectionState().ECHAccepted {
			t.Error("the server did not accept ECH through the box")
		}
		c.SetDeadline(time.Now().Add(30 * time.Second))
		buf := make([]byte, 100)
		n, _ := c.Read(buf)
		if got := string(buf[:n]); got != "inner:secret.test ech:true" {
			t.Errorf("the server saw %q, want the inner name with ECH accepted", got)
		}
		c.Close()
		recs := connRecords(t, box, "public.test", 2)
		for _, r := range recs {
			if !r.HasFlag(audit.FlagECH) {
				t.Errorf("%s record of the ECH stream has flags %v, want ech", r.Event, r.Flags)
			}
		}
		if !slices.ContainsFunc(recs, func(r audit.Record) bool { return r.Event == "open" && r.Verdict == "allow" }) {
			t.Errorf("no open record allowing public.test: %+v", recs)
		}
	})
	t.Run("denied outer name", func(t *testing.T) {
		_, err := tls.Dial("tcp", box.proxyAddr(), client("other-public.test"))
		if err == nil {
			t.Fatal("an ECH hello for an unlisted public name got through")
		}
		checkDenied(t, err.Error())
		recs := connRecords(t, box, "other-public.test", 1)
		if r := recs[0]; r.Event != "deny" || !r.HasFlag(audit.FlagECH) {
			t.Errorf("the denied ECH hello: %+v, want a deny record with the ech flag", r)
		}
	})
}

// TestCase45EscapesThroughTheBox is the faults catalog's case 45 against the built lnm: the
// DoH canary name is answered as a denial, nothing listens on 853 (DoT), and a UDP datagram
// to the proxy port (QUIC) is answered with port unreachable: the box has no UDP socket there.
func TestCase45EscapesThroughTheBox(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the lnm binary")
	}
	bin := buildLNM(t)
	box := startLoopbackBox(t, bin, []string{".example.test"}, nil, nil)
	dc := &dns.Client{Timeout: 5 * time.Second}
	for _, qt := range []uint16{dns.TypeA, dns.TypeAAAA} {
		r, _, err := dc.Exchange(new(dns.Msg).SetQuestion("use-application-dns.net.", qt), fmt.Sprintf("127.0.0.1:%d", box.dns))
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Answer) != 0 || (r.Rcode != dns.RcodeNameError && r.Rcode != dns.RcodeRefused) {
			t.Errorf("canary %s: %v, want NXDOMAIN or REFUSED", dns.TypeToString[qt], r)
		}
	}
	if c, err := net.DialTimeout("tcp", "127.0.0.1:853", 5*time.Second); err == nil {
		c.Close()
		t.Errorf("something accepts on 127.0.0.1:853")
	} else if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("DoT: %v, want connection refused", err)
	}
	// A QUIC-sized datagram to the proxy port: the kernel answers port unreachable, which
	// a connected UDP socket reads back as ECONNREFUSED.
	u, err := net.Dial("udp", box.proxyAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	u.SetDeadline(time.Now().Add(10 * time.Second))
	if !waitFor(10*time.Second, func() bool {
		u.Write(make([]byte, 1200))
		_, err := u.Read(make([]byte, 64))
		return errors.Is(err, syscall.ECONNREFUSED)
	}) {
		t.Error("UDP to the proxy port: no port unreachable; something listens for QUIC")
	}
}
