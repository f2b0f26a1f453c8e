package levelid

import (
	"bytes"
	"io"
	"net/netip"
	"testing"
)

// FuzzAccept feeds a box arbitrary bytes from a child and from a device: never a panic, every
// refusal a reason of the package, every header accepted one that Marshal writes and Parse reads back the
// same after a round trip, and the bytes not taken as a header handed back in order.
func FuzzAccept(f *testing.F) {
	f.Add(mustMarshal(f, sample()))
	f.Add(append(mustMarshal(f, sample()), hello...))
	f.Add([]byte("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n"))
	f.Add(hello)
	f.Add(build(0x21, 0x11, tlv(0xE0, []byte{1})))
	box := &Box{Name: "l5", Children: []netip.Prefix{netip.MustParsePrefix("198.18.4.0/24")}}
	known := map[string]bool{}
	for _, r := range Reasons() {
		known[string(r)] = true
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		for _, src := range []netip.Addr{netip.MustParseAddr("198.18.4.2"), netip.MustParseAddr("198.18.2.10")} {
			r := bytes.NewReader(in)
			h, pending, err := box.Accept(r, src)
			if err != nil {
				if !known[string(ReasonOf(err))] {
					t.Fatalf("error without a known reason: %v", err)
				}
				continue
			}
			rest, _ := io.ReadAll(r)
			if h.Hops == 0 {
				if got := append(pending, rest...); !bytes.Equal(got, in) {
					t.Fatalf("stream %q, want %q", got, in)
				}
				continue
			}
			b, err := Marshal(&h)
			if err != nil {
				t.Fatalf("accepted %+v, which Marshal refuses: %v", h, err)
			}
			if again, err := Parse(b); err != nil || !equal(again, h) {
				t.Fatalf("accepted %+v re-encodes as %x, which parses as %+v, %v", h, b, again, err)
			}
			if len(in)-len(rest) > MaxSize {
				t.Fatalf("Accept took %d bytes, over MaxSize", len(in)-len(rest))
			}
		}
		if h, err := Parse(in); err == nil {
			if _, err := Marshal(&h); err != nil {
				t.Fatalf("Parse accepted %+v, which Marshal refuses: %v", h, err)
			}
		}
	})
}
