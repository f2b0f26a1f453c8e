package clienthello

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/cryptobyte"

	"github.com/lnm-project/lnm/allowlist"
)

// helloFromGo runs a crypto/tls client against an in-memory pipe and returns the bytes it
// sent before the server would have to answer: its ClientHello, as records on the wire.
func helloFromGo(t testing.TB, cfg *tls.Config) []byte {
	t.Helper()
	client, server := net.Pipe()
	done := make(chan error, 1)
	go func() { done <- tls.Client(client, cfg).Handshake() }()

	// Read the records independently of the code under test: Go writes its hello as one
	// handshake record holding exactly one message.
	var hdr [recordHeaderLen]byte
	if _, err := io.ReadFull(server, hdr[:]); err != nil {
		t.Fatal(err)
	}
	body := make([]byte, int(hdr[3])<<8|int(hdr[4]))
	if _, err := io.ReadFull(server, body); err != nil {
		t.Fatal(err)
	}
	server.Close()
	if err := <-done; err == nil {
		t.Fatal("handshake succeeded against a closed pipe")
	}
	client.Close()
	if hdr[0] != recordTypeHandshake || body[0] != handshakeTypeClientHello ||
		int(body[1])<<16|int(body[2])<<8|int(body[3]) != len(body)-handshakeHeaderLen {
		t.Fatalf("Go's hello is not one record with one message: % x", hdr)
	}
	return append(hdr[:], body...)
}

// helloConfigs are the real clients the tests record. Go 1.24+ sends X25519MLKEM768 and
// X25519 key shares by default; the X25519-only config is the classical control.
var helloConfigs = []struct {
	name     string
	cfg      *tls.Config
	wantALPN []string
	pq       bool
}{
	{name: "default-pq", cfg: &tls.Config{ServerName: "mqtt.example.com"}, pq: true},
	{name: "classic-x25519", cfg: &tls.Config{ServerName: "mqtt.example.com", CurvePreferences: []tls.CurveID{tls.X25519}}},
	{name: "alpn-h2", cfg: &tls.Config{ServerName: "mqtt.example.com", NextProtos: []string{"h2", "http/1.1"}}, wantALPN: []string{"h2", "http/1.1"}, pq: true},
	{name: "alpn-mqtt", cfg: &tls.Config{ServerName: "mqtt.example.com", NextProtos: []string{"mqtt"}}, wantALPN: []string{"mqtt"}, pq: true},
	{name: "tls12-max", cfg: &tls.Config{ServerName: "mqtt.example.com", MaxVersion: tls.VersionTLS12}},
}

// helloMessage strips the record headers off a recorded hello.
func helloMessage(t testing.TB, raw []byte) []byte {
	t.Helper()
	var msg []byte
	for len(raw) > 0 {
		n := int(raw[3])<<8 | int(raw[4])
		msg = append(msg, raw[recordHeaderLen:recordHeaderLen+n]...)
		raw = raw[recordHeaderLen+n:]
	}
	return msg
}

// helloRecords frames a handshake message as handshake records of at most size bytes.
func helloRecords(msg []byte, size int) []byte {
	var out []byte
	for frag := range slices.Chunk(msg, size) {
		out = append(out, recordTypeHandshake, 3, 1, byte(len(frag)>>8), byte(len(frag)))
		out = append(out, frag...)
	}
	return out
}

// helloChunkReader returns its data in reads of the given sizes, cycling through them.
type helloChunkReader struct {
	data  []byte
	sizes []int
	i     int
}

func (c *helloChunkReader) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := min(len(p), len(c.data), c.sizes[c.i%len(c.sizes)])
	c.i++
	copy(p, c.data[:n])
	c.data = c.data[n:]
	return n, nil
}

func helloOneByteReader(data []byte) io.Reader { return &helloChunkReader{data: data, sizes: []int{1}} }

func helloReason(err error) allowlist.Reason {
	if he, ok := errors.AsType[*Error](err); ok {
		return he.Reason
	}
	return allowlist.Reason(fmt.Sprintf("not a Error: %v", err))
}

func TestReadClientHelloGoClients(t *testing.T) {
	for _, tc := range helloConfigs {
		t.Run(tc.name, func(t *testing.T) {
			wire := helloFromGo(t, tc.cfg)
			raw, h, err := Read(bytes.NewReader(wire), 0)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(raw, wire) {
				t.Errorf("raw is %d bytes, not the %d the client sent", len(raw), len(wire))
			}
			if h.SNI != "mqtt.example.com" {
				t.Errorf("SNI = %q", h.SNI)
			}
			if !slices.Equal(h.ALPN, tc.wantALPN) {
				t.Errorf("ALPN = %q, want %q", h.ALPN, tc.wantALPN)
			}
			if h.Version != tls.VersionTLS12 || h.ECH {
				t.Errorf("Version = %#x, ECH = %v", h.Version, h.ECH)
			}
			if h.Size != len(wire)-recordHeaderLen-handshakeHeaderLen {
				t.Errorf("Size = %d, wire is %d bytes", h.Size, len(wire))
			}
			// The post-quantum share alone is 1216 bytes: the hello no longer fits in one
			// 1460-byte segment, which is what broke single-read SNI proxies.
			if tc.pq && len(wire) <= 1500 {
				t.Errorf("post-quantum hello is only %d bytes on the wire", len(wire))
			}
			t.Logf("hello: %d bytes on the wire, handshake body %d", len(wire), h.Size)
			if !tc.pq && h.Size > 1000 {
				t.Errorf("classical hello is %d bytes", h.Size)
			}
		})
	}
}

func TestReadClientHelloSplits(t *testing.T) {
	for _, hc := range helloConfigs[:2] {
		wire := helloFromGo(t, hc.cfg)
		msg := helloMessage(t, wire)
		want, err := Parse(msg)
		if err != nil {
			t.Fatal(err)
		}
		cases := []struct {
			name string
			wire []byte
			r    func([]byte) io.Reader
		}{
			{"one read", wire, func(b []byte) io.Reader { return bytes.NewReader(b) }},
			{"1-byte reads", wire, helloOneByteReader},
			{"record header split 3+2", wire, func(b []byte) io.Reader { return &helloChunkReader{data: b, sizes: []int{3, 2, 1 << 20}} }},
			{"first segment of 7 bytes", wire, func(b []byte) io.Reader { return &helloChunkReader{data: b, sizes: []int{7, 1 << 20}} }},
			{"1460-byte segments", wire, func(b []byte) io.Reader { return &helloChunkReader{data: b, sizes: []int{1460}} }},
			{"512-byte records", helloRecords(msg, 512), func(b []byte) io.Reader { return bytes.NewReader(b) }},
			{"512-byte records, 1-byte reads", helloRecords(msg, 512), helloOneByteReader},
			{"1-byte records", helloRecords(msg, 1), func(b []byte) io.Reader { return bytes.NewReader(b) }},
			{"1-byte records, 1-byte reads", helloRecords(msg, 1), helloOneByteReader},
			{"3-byte records, 5-byte reads", helloRecords(msg, 3), func(b []byte) io.Reader { return &helloChunkReader{data: b, sizes: []int{5}} }},
		}
		for _, tc := range cases {
			t.Run(hc.name+"/"+tc.name, func(t *testing.T) {
				raw, h, err := Read(tc.r(tc.wire), 0)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(raw, tc.wire) {
					t.Errorf("raw is %d bytes, want the %d sent", len(raw), len(tc.wire))
				}
				if h.SNI != want.SNI || h.Size != want.Size || h.Version != want.Version || !slices.Equal(h.ALPN, want.ALPN) {
					t.Errorf("got %+v, want %+v", h, want)
				}
			})
		}
	}
}

// TestClientHelloPrefixes: no proper prefix of a hello, however it is framed, yields a hello.
func TestClientHelloPrefixes(t *testing.T) {
	for _, hc := range helloConfigs[:2] {
		wire := helloFromGo(t, hc.cfg)
		msg := helloMessage(t, wire)
		t.Run(hc.name+"/parse", func(t *testing.T) {
			for i := range len(msg) {
				if h, err := Parse(msg[:i]); err == nil {
					t.Fatalf("%d-byte prefix parsed: %+v", i, h)
				} else if r := helloReason(err); r != ReasonMalformed {
					t.Fatalf("%d-byte prefix: reason %s", i, r)
				}
			}
		})
		for _, framing := range []struct {
			name string
			wire []byte
		}{{"read", wire}, {"read 7-byte records", helloRecords(msg, 7)}} {
			t.Run(hc.name+"/"+framing.name, func(t *testing.T) {
				for i := range len(framing.wire) {
					raw, h, err := Read(bytes.NewReader(framing.wire[:i]), 0)
					if err == nil {
						t.Fatalf("%d-byte prefix read as a hello: %+v", i, h)
					}
					if r := helloReason(err); r != ReasonClientClosed {
						t.Fatalf("%d-byte prefix: reason %s (%v)", i, r, err)
					}
					if !bytes.Equal(raw, framing.wire[:i]) {
						t.Fatalf("%d-byte prefix: raw has %d bytes", i, len(raw))
					}
				}
			})
		}
	}
}

// helloExt is one extension of a synthetic hello.
type helloExt struct {
	typ  uint16
	data []byte
}

// helloBuild makes a ClientHello handshake message shaped like a TLS 1.3 client's, with the
// given extensions in order.
func helloBuild(exts ...helloExt) []byte {
	var b cryptobyte.Builder
	b.AddUint8(handshakeTypeClientHello)
	b.AddUint24LengthPrefixed(func(b *cryptobyte.Builder) {
		b.AddUint16(tls.VersionTLS12)
		b.AddBytes(make([]byte, 32))
		b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(make([]byte, 32)) })
		b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddUint16(tls.TLS_AES_128_GCM_SHA256) })
		b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddUint8(0) })
		b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
			for _, e := range exts {
				b.AddUint16(e.typ)
				b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(e.data) })
			}
		})
	})
	return b.BytesOrPanic()
}

// helloSNIEntry is one ServerName of a server_name list.
type helloSNIEntry struct {
	nameType uint8
	name     string
}

func helloSNIExt(entries ...helloSNIEntry) helloExt {
	var b cryptobyte.Builder
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
		for _, e := range entries {
			b.AddUint8(e.nameType)
			b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes([]byte(e.name)) })
		}
	})
	return helloExt{extServerName, b.BytesOrPanic()}
}

func helloHostExt(name string) helloExt { return helloSNIExt(helloSNIEntry{sniHostName, name}) }

func helloALPNExt(protos ...string) helloExt {
	var b cryptobyte.Builder
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
		for _, p := range protos {
			b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes([]byte(p)) })
		}
	})
	return helloExt{extALPN, b.BytesOrPanic()}
}

var (
	helloSupportedVersions = helloExt{43, []byte{2, 3, 4}} // RFC 8446 §4.2.1: TLS 1.3 only
	helloECHGrease         = helloExt{extECH, []byte{0, 0, 1, 0, 1, 7, 0, 0, 0, 0}}
)

func TestParseClientHelloSNI(t *testing.T) {
	long := strings.Repeat("a", 63)
	cases := []struct {
		name     string
		exts     []helloExt
		wantSNI  allowlist.Name
		wantWhy  allowlist.Reason
		wantECH  bool
		wantALPN []string
	}{
		{name: "plain", exts: []helloExt{helloHostExt("mqtt.example.com"), helloSupportedVersions}, wantSNI: "mqtt.example.com"},
		{name: "upper case is normalized", exts: []helloExt{helloHostExt("MQTT.Example.COM")}, wantSNI: "mqtt.example.com"},
		{name: "punycode A-label", exts: []helloExt{helloHostExt("xn--bcher-kva.example")}, wantSNI: "xn--bcher-kva.example"},
		{name: "253-byte name", exts: []helloExt{helloHostExt(long + "." + long + "." + long + "." + strings.Repeat("b", 61))}, wantSNI: allowlist.Name(long + "." + long + "." + long + "." + strings.Repeat("b", 61))},
		{name: "ECH outer name", exts: []helloExt{helloHostExt("public.example.net"), helloECHGrease}, wantSNI: "public.example.net", wantECH: true},
		{name: "ALPN after SNI", exts: []helloExt{helloHostExt("a.example"), helloALPNExt("mqtt", "x-opc")}, wantSNI: "a.example", wantALPN: []string{"mqtt", "x-opc"}},

		{name: "no SNI extension", exts: []helloExt{helloSupportedVersions}, wantWhy: ReasonNoSNI},
		{name: "no extensions at all", exts: nil, wantWhy: ReasonNoSNI},
		{name: "empty extension data", exts: []helloExt{{extServerName, nil}}, wantWhy: ReasonBadSNI},
		{name: "empty server name list", exts: []helloExt{helloSNIExt()}, wantWhy: ReasonBadSNI},
		{name: "list length overruns extension", exts: []helloExt{{extServerName, []byte{0, 9, 0, 0, 1, 'a'}}}, wantWhy: ReasonBadSNI},
		{name: "bytes after the list", exts: []helloExt{{extServerName, append(helloHostExt("a.example").data, 0)}}, wantWhy: ReasonBadSNI},
		{name: "truncated entry", exts: []helloExt{{extServerName, []byte{0, 2, 0, 0}}}, wantWhy: ReasonBadSNI},
		{name: "two host_names", exts: []helloExt{helloSNIExt(helloSNIEntry{0, "a.example"}, helloSNIEntry{0, "b.example"})}, wantWhy: ReasonBadSNI},
		{name: "same host_name twice", exts: []helloExt{helloSNIExt(helloSNIEntry{0, "a.example"}, helloSNIEntry{0, "a.example"})}, wantWhy: ReasonBadSNI},
		{name: "duplicated SNI extension", exts: []helloExt{helloHostExt("a.example"), helloHostExt("b.example")}, wantWhy: ReasonMalformed},
		{name: "trailing dot", exts: []helloExt{helloHostExt("mqtt.example.com.")}, wantWhy: ReasonBadSNI},
		{name: "only a dot", exts: []helloExt{helloHostExt(".")}, wantWhy: ReasonBadSNI},
		{name: "name_type 1 only", exts: []helloExt{helloSNIExt(helloSNIEntry{1, "a.example"})}, wantWhy: ReasonBadSNI},
		{name: "host_name then name_type 1", exts: []helloExt{helloSNIExt(helloSNIEntry{0, "a.example"}, helloSNIEntry{1, "b.example"})}, wantWhy: ReasonBadSNI},
		{name: "zero-length name", exts: []helloExt{helloHostExt("")}, wantWhy: ReasonBadSNI},
		{name: "NUL inside", exts: []helloExt{helloHostExt("a.example\x00.evil.com")}, wantWhy: ReasonBadSNI},
		{name: "leading NUL", exts: []helloExt{helloHostExt("\x00example.com")}, wantWhy: ReasonBadSNI},
		{name: "raw UTF-8", exts: []helloExt{helloHostExt("bücher.example")}, wantWhy: ReasonBadSNI},
		{name: "space", exts: []helloExt{helloHostExt("a b.example")}, wantWhy: ReasonBadSNI},
		{name: "empty label", exts: []helloExt{helloHostExt("a..example")}, wantWhy: ReasonBadSNI},
		{name: "dots only", exts: []helloExt{helloHostExt("...........")}, wantWhy: ReasonBadSNI},
		{name: "254-byte name", exts: []helloExt{helloHostExt(long + "." + long + "." + long + "." + strings.Repeat("b", 62))}, wantWhy: ReasonBadSNI},
		{name: "300-byte name", exts: []helloExt{helloHostExt(strings.Repeat("a.", 150))}, wantWhy: ReasonBadSNI},
		{name: "64-byte label", exts: []helloExt{helloHostExt(long + "a.example")}, wantWhy: ReasonBadSNI},
		{name: "IPv4 literal", exts: []helloExt{helloHostExt("10.0.0.5")}, wantWhy: ReasonBadSNI},
		{name: "IPv6 literal", exts: []helloExt{helloHostExt("2001:db8::1")}, wantWhy: ReasonBadSNI},
		{name: "bracketed IPv6", exts: []helloExt{helloHostExt("[2001:db8::1]")}, wantWhy: ReasonBadSNI},
		{name: "bracketed long name (sniproxy CVE-2023-25076)", exts: []helloExt{helloHostExt("[" + strings.Repeat("long.", 60) + "example.com]")}, wantWhy: ReasonBadSNI},
		{name: "65535-byte name", exts: []helloExt{helloHostExt(strings.Repeat("a", 65535-5-4))}, wantWhy: ReasonBadSNI},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h, err := Parse(helloBuild(tc.exts...))
			if tc.wantWhy != "" {
				if r := helloReason(err); r != tc.wantWhy {
					t.Fatalf("reason %s (%v), want %s; hello %+v", r, err, tc.wantWhy, h)
				}
				if strings.ContainsRune(err.Error(), 0) {
					t.Errorf("error text carries a raw NUL: %q", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if h.SNI != tc.wantSNI || h.ECH != tc.wantECH || !slices.Equal(h.ALPN, tc.wantALPN) {
				t.Errorf("got %+v, want SNI %q ECH %v ALPN %q", h, tc.wantSNI, tc.wantECH, tc.wantALPN)
			}
		})
	}
}

// helloFields builds a hello from raw body parts, for the fixed-field cases.
func helloFields(parts ...[]byte) []byte {
	body := slices.Concat(parts...)
	return append([]byte{handshakeTypeClientHello, byte(len(body) >> 16), byte(len(body) >> 8), byte(len(body))}, body...)
}

func TestParseClientHelloFraming(t *testing.T) {
	var (
		version  = []byte{3, 3}
		random   = make([]byte, 32)
		noSessID = []byte{0}
		suites   = []byte{0, 2, 0x13, 0x01}
		compNull = []byte{1, 0}
		exts     = helloBuild(helloHostExt("a.example"))[4+2+32+1+32+4+2:] // extensions block of a good hello
	)
	good := helloFields(version, random, noSessID, suites, compNull, exts)
	if h, err := Parse(good); err != nil || h.SNI != "a.example" {
		t.Fatalf("control hello: %+v, %v", h, err)
	}
	cases := []struct {
		name string
		msg  []byte
		want allowlist.Reason
	}{
		{"empty", nil, ReasonMalformed},
		{"header only", []byte{1, 0, 0, 0}, ReasonMalformed},
		{"length shorter than body", append(slices.Clone(good[:3]), good[3]-1), ReasonMalformed},
		{"byte after the message", append(slices.Clone(good), 0), ReasonMalformed},
		{"server_hello type", append([]byte{2}, good[1:]...), ReasonMalformed},
		{"session id of 33 bytes", helloFields(version, random, append([]byte{33}, make([]byte, 33)...), suites, compNull, exts), ReasonMalformed},
		{"no cipher suites", helloFields(version, random, noSessID, []byte{0, 0}, compNull, exts), ReasonMalformed},
		{"odd cipher suite bytes", helloFields(version, random, noSessID, []byte{0, 3, 0x13, 0x01, 0}, compNull, exts), ReasonMalformed},
		{"no compression methods", helloFields(version, random, noSessID, suites, []byte{0}, exts), ReasonMalformed},
		{"extensions length overruns", helloFields(version, random, noSessID, suites, compNull, []byte{0, 9, 0, 0}), ReasonMalformed},
		{"bytes after extensions", helloFields(version, random, noSessID, suites, compNull, exts, []byte{0}), ReasonMalformed},
		{"one byte where extensions go", helloFields(version, random, noSessID, suites, compNull, []byte{0}), ReasonMalformed},
		{"truncated extension header", helloFields(version, random, noSessID, suites, compNull, []byte{0, 3, 0, 0, 0}), ReasonMalformed},
		{"TLS 1.2 hello without extensions", helloFields(version, random, noSessID, suites, compNull), ReasonNoSNI},
		{"empty extensions block", helloFields(version, random, noSessID, suites, compNull, []byte{0, 0}), ReasonNoSNI},
		{"duplicated supported_versions", helloBuild(helloHostExt("a.example"), helloSupportedVersions, helloSupportedVersions), ReasonMalformed},
		{"duplicated ECH", helloBuild(helloHostExt("a.example"), helloECHGrease, helloECHGrease), ReasonMalformed},
		{"empty ALPN list", helloBuild(helloHostExt("a.example"), helloALPNExt()), ReasonMalformed},
		{"empty ALPN name", helloBuild(helloHostExt("a.example"), helloALPNExt("h2", "")), ReasonMalformed},
		{"ALPN name overruns", helloBuild(helloHostExt("a.example"), helloExt{extALPN, []byte{0, 3, 5, 'h', '2'}}), ReasonMalformed},
		{"bad ALPN beats bad SNI", helloBuild(helloHostExt("10.0.0.1"), helloALPNExt()), ReasonMalformed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h, err := Parse(tc.msg)
			if r := helloReason(err); r != tc.want {
				t.Fatalf("reason %s (%v), want %s; hello %+v", r, err, tc.want, h)
			}
		})
	}
}

// helloOfSize builds a hello whose handshake body is exactly size bytes, with a padding
// extension (RFC 7685) taking up the slack.
func helloOfSize(t testing.TB, size int) []byte {
	t.Helper()
	base := len(helloBuild(helloHostExt("big.example"), helloExt{21, nil})) - handshakeHeaderLen
	msg := helloBuild(helloHostExt("big.example"), helloExt{21, make([]byte, size-base)})
	if len(msg)-handshakeHeaderLen != size {
		t.Fatalf("built %d bytes, want %d", len(msg)-handshakeHeaderLen, size)
	}
	return msg
}

func TestReadClientHelloTooLarge(t *testing.T) {
	// A record header announcing length n, then a body of 1 byte.
	recordOf := func(n int) []byte { return []byte{22, 3, 1, byte(n >> 8), byte(n), 1} }
	cases := []struct {
		name    string
		wire    []byte
		maxSize int
		want    allowlist.Reason // "" for success
	}{
		{"at the cap", helloRecords(helloOfSize(t, MaxSize), 16384), 0, ""},
		{"one byte over the cap", helloRecords(helloOfSize(t, MaxSize+1), 16384), 0, ReasonTooLarge},
		{"17000-byte hello", helloRecords(helloOfSize(t, 17000), 16384), 0, ReasonTooLarge},
		{"smaller cap", helloRecords(helloOfSize(t, 2000), 16384), 1999, ReasonTooLarge},
		{"record of 2^14+1", recordOf(1<<14 + 1), 0, ReasonTooLarge},
		{"record of 2^14+256", recordOf(1<<14 + 256), 0, ReasonTooLarge},
		{"record of 2^14+257", recordOf(1<<14 + 257), 0, ReasonTooLarge},
		{"record of 0xffff", recordOf(0xffff), 0, ReasonTooLarge},
		{"handshake length 0xffffff", []byte{22, 3, 1, 0x40, 0, 1, 0xff, 0xff, 0xff, 3, 3}, 0, ReasonTooLarge},
		// Fragmentation overhead is budgeted at 4x the cap: 1-byte records carry 6 raw bytes
		// per hello byte, so a 1-byte-record hello of 12000 bytes exceeds 64 KiB buffered.
		{"1-byte records over the byte budget", helloRecords(helloOfSize(t, 12000), 1), 0, ReasonTooLarge},
		{"1-byte records within the byte budget", helloRecords(helloOfSize(t, 10000), 1), 0, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			raw, h, err := Read(bytes.NewReader(tc.wire), tc.maxSize)
			if tc.want == "" {
				if err != nil || h.SNI != "big.example" {
					t.Fatalf("got %+v, %v", h, err)
				}
				return
			}
			if r := helloReason(err); r != tc.want {
				t.Fatalf("reason %s (%v), want %s", r, err, tc.want)
			}
			if limit := 4 * helloCap(tc.maxSize, MaxSize); len(raw) > limit {
				t.Errorf("buffered %d bytes, over the %d budget", len(raw), limit)
			}
		})
	}
}

// helloCap returns a unless it is zero.
func helloCap(a, b int) int {
	if a == 0 {
		return b
	}
	return a
}

// helloStallReader returns its data, then fails the test if read again: the caller must decide
// without waiting for more.
type helloStallReader struct {
	t    *testing.T
	data []byte
}

func (s *helloStallReader) Read(p []byte) (int, error) {
	if len(s.data) == 0 {
		s.t.Error("read again after the deciding bytes")
		return 0, os.ErrDeadlineExceeded
	}
	n := copy(p, s.data)
	s.data = s.data[n:]
	return n, nil
}

func TestReadClientHelloNotTLS(t *testing.T) {
	cases := []struct {
		name string
		wire []byte
	}{
		{"HTTP GET", []byte("GET / HTTP/1.1\r\nHost: mqtt.example.com\r\n\r\n")},
		{"100 zero bytes", make([]byte, 100)},
		{"PROXY v1", []byte("PROXY TCP4 192.168.30.7 192.168.30.1 50123 443\r\n")},
		{"PROXY v2", []byte("\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c\xc0\xa8\x1e\x07\xc0\xa8\x1e\x01\xc3\xcb\x01\xbb")},
		{"SSH banner", []byte("SSH-2.0-OpenSSH_9.6\r\n")},
		{"SSLv2-compatible hello", []byte{0x80, 0x2e, 0x01, 0x03, 0x01, 0x00, 0x15, 0x00, 0x00, 0x00, 0x10}},
		{"TLS alert record first", []byte{21, 3, 3, 0, 2, 2, 40}},
		{"application data first", []byte{23, 3, 3, 0, 1, 0}},
		{"record version 2.0", []byte{22, 2, 0, 0, 1, 1}},
		{"record version 3.5", []byte{22, 3, 5, 0, 1, 1}},
		{"MQTT CONNECT", []byte{0x10, 0x0c, 0, 4, 'M', 'Q', 'T', 'T', 4, 2, 0, 60, 0, 0}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := Read(bytes.NewReader(tc.wire), 0)
			if r := helloReason(err); r != ReasonNotTLS {
				t.Fatalf("reason %s (%v)", r, err)
			}
		})
		// A plaintext client that sends its first byte and waits is told at once, not after
		// the hello deadline.
		t.Run(tc.name+"/first bytes then silence", func(t *testing.T) {
			n := 1
			if tc.wire[0] == recordTypeHandshake {
				n = 3
			}
			_, _, err := Read(&helloStallReader{t: t, data: tc.wire[:n]}, 0)
			if r := helloReason(err); r != ReasonNotTLS {
				t.Fatalf("reason %s (%v)", r, err)
			}
		})
	}
}

func TestReadClientHelloMalformedRecords(t *testing.T) {
	msg := helloBuild(helloHostExt("a.example"))
	recs := helloRecords(msg, 20)
	first := recs[:recordHeaderLen+20]
	rest := recs[len(first):]
	cases := []struct {
		name string
		wire []byte
	}{
		{"change_cipher_spec inside the hello", slices.Concat(first, []byte{20, 3, 3, 0, 1, 1}, rest)},
		{"alert inside the hello", slices.Concat(first, []byte{21, 3, 3, 0, 2, 1, 0}, rest)},
		{"application data inside the hello", slices.Concat(first, []byte{23, 3, 3, 0, 1, 0}, rest)},
		// The same bytes, only the middle record's type changed: the hello would parse if the
		// record layer were not checked.
		{"hello fragment as change_cipher_spec", helloRecordEdit(recs, 1, 0, 20)},
		{"hello fragment as alert", helloRecordEdit(recs, 1, 0, 21)},
		{"hello fragment as application data", helloRecordEdit(recs, 1, 0, 23)},
		{"hello fragment as heartbeat", helloRecordEdit(recs, 1, 0, 24)},
		{"zero-length first record", slices.Concat([]byte{22, 3, 1, 0, 0}, recs)},
		{"zero-length record inside the hello", slices.Concat(first, []byte{22, 3, 1, 0, 0}, rest)},
		{"later record version 2.0", helloRecordEdit(recs, 1, 1, 2)},
		{"later record version 3.5", helloRecordEdit(recs, 1, 2, 5)},
		{"server_hello", helloRecords(append([]byte{2}, msg[1:]...), 1000)},
		{"server_hello in 1-byte records", helloRecords(append([]byte{2}, msg[1:]...), 1)},
		{"garbage body", helloRecords([]byte{1, 0, 0, 4, 3, 3, 0, 0}, 1000)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, h, err := Read(bytes.NewReader(tc.wire), 0)
			if r := helloReason(err); r != ReasonMalformed {
				t.Fatalf("reason %s (%v); hello %+v", r, err, h)
			}
		})
	}
}

// helloRecordEdit returns a copy of 20-byte-framed records with byte off of record i's
// header set to v.
func helloRecordEdit(recs []byte, i, off int, v byte) []byte {
	out := slices.Clone(recs)
	out[i*(recordHeaderLen+20)+off] = v
	return out
}

// helloErrReader returns its data, then err forever.
type helloErrReader struct {
	data []byte
	err  error
}

func (e *helloErrReader) Read(p []byte) (int, error) {
	if len(e.data) == 0 {
		return 0, e.err
	}
	n := copy(p, e.data)
	e.data = e.data[n:]
	return n, nil
}

// helloZeroReader never makes progress and never fails, which io.Reader discourages.
type helloZeroReader struct{}

func (helloZeroReader) Read([]byte) (int, error) { return 0, nil }

func TestReadClientHelloReadErrors(t *testing.T) {
	wire := helloRecords(helloBuild(helloHostExt("a.example")), 1000)
	cases := []struct {
		name   string
		r      io.Reader
		want   allowlist.Reason
		wantIs error
	}{
		{"nothing, then EOF", bytes.NewReader(nil), ReasonClientClosed, io.EOF},
		{"record header, then EOF", bytes.NewReader(wire[:5]), ReasonClientClosed, io.EOF},
		{"deadline before any byte", &helloErrReader{err: os.ErrDeadlineExceeded}, ReasonTimeout, os.ErrDeadlineExceeded},
		{"deadline mid-hello", &helloErrReader{data: wire[:40], err: os.ErrDeadlineExceeded}, ReasonTimeout, os.ErrDeadlineExceeded},
		{"connection reset", &helloErrReader{data: wire[:40], err: syscall.ECONNRESET}, ReasonClientClosed, syscall.ECONNRESET},
		{"reads that return nothing", helloZeroReader{}, ReasonClientClosed, io.ErrNoProgress},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := Read(tc.r, 0)
			if r := helloReason(err); r != tc.want {
				t.Fatalf("reason %s (%v), want %s", r, err, tc.want)
			}
			if !errors.Is(err, tc.wantIs) {
				t.Errorf("%v does not unwrap to %v", err, tc.wantIs)
			}
		})
	}

	// A real deadline on a real connection: a client that sends a record header and stops.
	t.Run("net.Pipe deadline", func(t *testing.T) {
		client, server := net.Pipe()
		defer client.Close()
		defer server.Close()
		go client.Write(wire[:5])
		server.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		raw, _, err := Read(server, 0)
		if r := helloReason(err); r != ReasonTimeout {
			t.Fatalf("reason %s (%v)", r, err)
		}
		if !bytes.Equal(raw, wire[:5]) {
			t.Errorf("raw = % x", raw)
		}
	})
}

// TestReadClientHelloReplay: what arrives after the hello in the same reads (0-RTT data, a
// coalesced record) is returned in raw, so the upstream sees the client's exact bytes.
func TestReadClientHelloReplay(t *testing.T) {
	msg := helloBuild(helloHostExt("a.example"))
	early := []byte{23, 3, 3, 0, 4, 'd', 'a', 't', 'a'}
	cases := []struct {
		name string
		wire []byte
	}{
		{"early data after the hello", slices.Concat(helloRecords(msg, 1000), early)},
		{"another handshake message in the last record", helloRecords(slices.Concat(msg, []byte{20, 0, 0, 1, 9}), 1000)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			raw, h, err := Read(bytes.NewReader(tc.wire), 0)
			if err != nil || h.SNI != "a.example" {
				t.Fatalf("got %+v, %v", h, err)
			}
			if !bytes.Equal(raw, tc.wire) {
				t.Errorf("raw is %d bytes, the client sent %d", len(raw), len(tc.wire))
			}
		})
	}
}

// helloTrickleReader hands out a record header and handshake header announcing a big hello, then
// n bytes of body, one per read, then EOF.
type helloTrickleReader struct {
	head []byte
	n    int
}

func (tr *helloTrickleReader) Read(p []byte) (int, error) {
	if len(tr.head) > 0 {
		k := copy(p, tr.head)
		tr.head = tr.head[k:]
		return k, nil
	}
	if tr.n == 0 {
		return 0, io.EOF
	}
	tr.n--
	p[0] = 0
	return 1, nil
}

// TestReadClientHelloMemory: a lying length costs nothing; memory follows the bytes that
// really arrived, not the length the client announced.
func TestReadClientHelloMemory(t *testing.T) {
	cases := []struct {
		name    string
		head    []byte
		trickle int
		want    allowlist.Reason
		// maxBytes allocated per call: far below the declared lengths (16 MiB, 16000), with
		// room for the race detector's bookkeeping (about 3.3 KiB under -race).
		maxBytes uint64
	}{
		{"handshake length 0xffffff", []byte{22, 3, 1, 0x40, 0, 1, 0xff, 0xff, 0xff}, 1000, ReasonTooLarge, 8192},
		{"hello of 16000 announced, 100 bytes sent", []byte{22, 3, 1, 0x40, 0, 1, 0, 0x3e, 0x80}, 100, ReasonClientClosed, 8192},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := Read(&helloTrickleReader{head: tc.head, n: tc.trickle}, 0)
			if r := helloReason(err); r != tc.want {
				t.Fatalf("reason %s (%v), want %s", r, err, tc.want)
			}
			const runs = 200
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			for range runs {
				Read(&helloTrickleReader{head: tc.head, n: tc.trickle}, 0)
			}
			runtime.ReadMemStats(&after)
			if per := (after.TotalAlloc - before.TotalAlloc) / runs; per > tc.maxBytes {
				t.Errorf("%d bytes allocated per call, want at most %d", per, tc.maxBytes)
			}
		})
	}
}

func TestHelloErrorText(t *testing.T) {
	err := error(&Error{Reason: ReasonBadSNI, Err: errors.New("empty host_name")})
	if got, want := err.Error(), "client hello: bad_sni: empty host_name"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if got, want := (&Error{Reason: ReasonNoSNI}).Error(), "client hello: no_sni"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

func BenchmarkParseClientHello(b *testing.B) {
	for _, hc := range helloConfigs[:2] {
		msg := helloMessage(b, helloFromGo(b, hc.cfg))
		b.Run(hc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(msg)))
			for b.Loop() {
				if _, err := Parse(msg); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkReadClientHello(b *testing.B) {
	for _, hc := range helloConfigs[:2] {
		wire := helloFromGo(b, hc.cfg)
		msg := helloMessage(b, wire)
		for _, framing := range []struct {
			name string
			wire []byte
		}{{"one-record", wire}, {"512-byte-records", helloRecords(msg, 512)}} {
			b.Run(hc.name+"/"+framing.name, func(b *testing.B) {
				b.ReportAllocs()
				b.SetBytes(int64(len(framing.wire)))
				var r bytes.Reader
				for b.Loop() {
					r.Reset(framing.wire)
					if _, _, err := Read(&r, 0); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
