package clienthello

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/lnm-project/lnm/allowlist"
)

var helloUpdateCorpus = flag.Bool("hello.update-corpus", false, "rewrite the ClientHello seed corpus under testdata/fuzz from fresh crypto/tls recordings")

// helloCheck fails the test if a parse result breaks the API's promises: a success always
// carries a name that allowlist.ParseName accepts unchanged; a failure is always a Error
// with a known reason and no name.
func helloCheck(t *testing.T, h Hello, err error) {
	t.Helper()
	if err != nil {
		he, ok := errors.AsType[*Error](err)
		if !ok {
			t.Fatalf("error %v is not a *Error", err)
		}
		switch he.Reason {
		case ReasonNotTLS, ReasonTooLarge, ReasonTimeout, ReasonMalformed,
			ReasonNoSNI, ReasonBadSNI, ReasonClientClosed:
		default:
			t.Fatalf("unknown reason %q", he.Reason)
		}
		if h.SNI != "" {
			t.Fatalf("error %v came with SNI %q", err, h.SNI)
		}
		return
	}
	n, perr := allowlist.ParseName(string(h.SNI))
	if perr != nil || n != h.SNI || strings.HasSuffix(string(h.SNI), ".") {
		t.Fatalf("accepted SNI %q that is not a normalized name (%v)", h.SNI, perr)
	}
}

func FuzzParseClientHello(f *testing.F) {
	// The committed corpus (testdata/fuzz/FuzzParseClientHello) holds recorded Go hellos and
	// the crafted shapes; today's Go client is added fresh.
	f.Add(helloMessage(f, helloFromGo(f, helloConfigs[0].cfg)))
	f.Fuzz(func(t *testing.T, msg []byte) {
		h, err := Parse(msg)
		helloCheck(t, h, err)
		if err == nil && h.Size != len(msg)-handshakeHeaderLen {
			t.Fatalf("Size %d for a %d-byte message", h.Size, len(msg))
		}
	})
}

func FuzzReadClientHello(f *testing.F) {
	f.Add(helloFromGo(f, helloConfigs[0].cfg), byte(0))
	f.Fuzz(func(t *testing.T, wire []byte, chunk byte) {
		raw, h, err := Read(bytes.NewReader(wire), 0)
		helloCheck(t, h, err)
		if !bytes.HasPrefix(wire, raw) {
			t.Fatalf("raw is not a prefix of what was sent")
		}
		if len(raw) > 4*MaxSize {
			t.Fatalf("buffered %d bytes", len(raw))
		}
		// How the bytes are cut into reads must never change the outcome.
		if chunk == 0 {
			return
		}
		raw2, h2, err2 := Read(&helloChunkReader{data: wire, sizes: []int{int(chunk)}}, 0)
		helloCheck(t, h2, err2)
		if helloReasonOrOK(err) != helloReasonOrOK(err2) || h.SNI != h2.SNI || h.Size != h2.Size || !slices.Equal(h.ALPN, h2.ALPN) {
			t.Fatalf("whole: %+v %v; in %d-byte reads: %+v %v", h, err, chunk, h2, err2)
		}
		if !bytes.HasPrefix(wire, raw2) {
			t.Fatalf("raw is not a prefix of what was sent, in %d-byte reads", chunk)
		}
	})
}

func helloReasonOrOK(err error) allowlist.Reason {
	if err == nil {
		return "ok"
	}
	return helloReason(err)
}

// helloSeeds are the seed corpus entries: name and arguments.
func helloSeeds(t *testing.T) (parse, read map[string][]any) {
	parse, read = map[string][]any{}, map[string][]any{}
	for _, hc := range helloConfigs {
		wire := helloFromGo(t, hc.cfg)
		msg := helloMessage(t, wire)
		parse["go-"+hc.name] = []any{msg}
		read["go-"+hc.name] = []any{wire, byte(0)}
		read["go-"+hc.name+"-1-byte-reads"] = []any{wire, byte(1)}
		read["go-"+hc.name+"-512-byte-records"] = []any{helloRecords(msg, 512), byte(7)}
	}
	crafted := map[string][]byte{
		"valid-sni":          helloBuild(helloHostExt("mqtt.example.com"), helloSupportedVersions),
		"no-extensions":      helloFields([]byte{3, 3}, make([]byte, 32), []byte{0}, []byte{0, 2, 0x13, 1}, []byte{1, 0}),
		"no-sni":             helloBuild(helloSupportedVersions),
		"ech-outer":          helloBuild(helloHostExt("public.example.net"), helloECHGrease),
		"alpn":               helloBuild(helloHostExt("a.example"), helloALPNExt("h2", "mqtt")),
		"two-host-names":     helloBuild(helloSNIExt(helloSNIEntry{0, "a.example"}, helloSNIEntry{0, "b.example"})),
		"duplicate-sni-ext":  helloBuild(helloHostExt("a.example"), helloHostExt("b.example")),
		"trailing-dot":       helloBuild(helloHostExt("a.example.")),
		"nul-in-name":        helloBuild(helloHostExt("\x00example.com")),
		"ipv4-literal":       helloBuild(helloHostExt("10.0.0.5")),
		"ipv6-literal":       helloBuild(helloHostExt("[2001:db8::1]")),
		"name-type-1":        helloBuild(helloSNIExt(helloSNIEntry{1, "a.example"})),
		"empty-sni-list":     helloBuild(helloSNIExt()),
		"large-hello-size":   helloOfSize(t, MaxSize),
		"server-hello-type":  append([]byte{2}, helloBuild(helloHostExt("a.example"))[1:]...),
		"truncated-ext-list": helloFields([]byte{3, 3}, make([]byte, 32), []byte{0}, []byte{0, 2, 0x13, 1}, []byte{1, 0}, []byte{0, 9, 0, 0}),
	}
	for name, msg := range crafted {
		parse[name] = []any{msg}
		read[name] = []any{helloRecords(msg, 16384), byte(3)}
	}
	read["not-ssl-http-get"] = []any{[]byte("GET / HTTP/1.1\r\nHost: a.example\r\n\r\n"), byte(0)}
	read["not-ssl-zeros"] = []any{make([]byte, 100), byte(0)}
	read["not-ssl-proxy-v1"] = []any{[]byte("PROXY TCP4 192.168.30.7 192.168.30.1 50123 443\r\n"), byte(0)}
	read["not-ssl-sslv2"] = []any{[]byte{0x80, 0x2e, 0x01, 0x03, 0x01, 0x00, 0x15}, byte(0)}
	read["too-large-0xffffff"] = []any{[]byte{22, 3, 1, 0x40, 0, 1, 0xff, 0xff, 0xff, 3, 3}, byte(1)}
	read["record-overflow"] = []any{[]byte{22, 3, 1, 0x41, 0, 1}, byte(0)}
	read["too-large-17000"] = []any{helloRecords(helloOfSize(t, 17000), 16384), byte(0)}
	read["ccs-inside-hello"] = []any{slices.Concat(helloRecords(crafted["valid-sni"][:20], 20), []byte{20, 3, 3, 0, 1, 1}), byte(0)}
	read["zero-length-record"] = []any{slices.Concat([]byte{22, 3, 1, 0, 0}, helloRecords(crafted["valid-sni"], 100)), byte(0)}
	read["one-byte-records"] = []any{helloRecords(crafted["valid-sni"], 1), byte(2)}
	return parse, read
}

// TestHelloFuzzCorpus keeps the committed seed corpus complete; with -hello.update-corpus it
// rewrites it from fresh recordings.
func TestHelloFuzzCorpus(t *testing.T) {
	parse, read := helloSeeds(t)
	for target, seeds := range map[string]map[string][]any{"FuzzParseClientHello": parse, "FuzzReadClientHello": read} {
		dir := filepath.Join("testdata", "fuzz", target)
		for name, args := range seeds {
			path := filepath.Join(dir, name)
			if !*helloUpdateCorpus {
				b, err := os.ReadFile(path)
				if err != nil {
					t.Errorf("seed missing (run with -hello.update-corpus): %v", err)
				} else if !bytes.HasPrefix(b, []byte("go test fuzz v1\n")) {
					t.Errorf("%s is not a fuzz corpus file", path)
				}
				continue
			}
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, helloCorpusFile(args), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// helloCorpusFile encodes arguments in the "go test fuzz v1" format.
func helloCorpusFile(args []any) []byte {
	var b bytes.Buffer
	b.WriteString("go test fuzz v1\n")
	for _, a := range args {
		switch v := a.(type) {
		case []byte:
			fmt.Fprintf(&b, "[]byte(%q)\n", v)
		case byte:
			fmt.Fprintf(&b, "byte(%q)\n", v)
		}
	}
	return b.Bytes()
}
