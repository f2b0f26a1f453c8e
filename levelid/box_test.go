package levelid

import (
	"bytes"
	"io"
	"net/netip"
	"testing"

	"github.com/lnm-project/lnm/allowlist"
)

var hello = []byte{0x16, 0x03, 0x01, 0x00, 0x05, 0x01, 0x00, 0x00, 0x01, 0x00}

func TestAccept(t *testing.T) {
	l4 := &Box{Name: "l4", Level: 4, Children: []netip.Prefix{netip.MustParsePrefix("198.18.3.0/24")}}
	child := netip.MustParseAddr("198.18.3.2")
	device := netip.MustParseAddr("198.18.2.10")
	fromL3 := l4.Next(nil, netip.MustParseAddrPort("198.18.2.10:5000"), netip.MustParseAddrPort("198.18.2.1:443"), 9)
	fromL3.Box, fromL3.Level, fromL3.Path = "l3", 3, []string{"l3"}
	loop := sample()
	loop.Path = []string{"l4", "l3"}
	loop.Box = "l3"
	far := sample()
	far.Path = []string{"a", "b", "c", "d", "e", "f", "g", "h"}
	far.Hops, far.Box = 8, "h"
	seven := far
	seven.Path, seven.Hops, seven.Box = far.Path[:7], 7, "g"
	bad := mustMarshal(t, fromL3)
	bad[len(bad)-1] = '!'

	cases := []struct {
		name   string
		src    netip.Addr
		in     []byte
		reason allowlist.Reason
		hops   int
		rest   []byte // what Accept returns to be read again, then what follows in r
	}{
		{name: "device hello", src: device, in: hello, rest: hello},
		{name: "child hello without header", src: child, in: hello, rest: hello},
		{name: "child header", src: child, in: append(mustMarshal(t, fromL3), hello...), hops: 1, rest: hello},
		{name: "seven hops", src: child, in: mustMarshal(t, seven), hops: 7},
		{name: "device header v2", src: device, in: append(mustMarshal(t, fromL3), hello...), reason: ReasonRefused},
		{name: "device header v1", src: device, in: []byte("PROXY TCP4 198.18.2.99 198.18.2.1 1 443\r\n"), reason: ReasonRefused},
		{name: "child header v1", src: child, in: []byte("PROXY TCP4 198.18.2.99 198.18.2.1 1 443\r\n"), reason: ReasonBadHeader},
		{name: "child bad header", src: child, in: bad, reason: ReasonBadHeader},
		{name: "child cut header", src: child, in: mustMarshal(t, fromL3)[:20], reason: ReasonBadHeader},
		{name: "loop", src: child, in: mustMarshal(t, loop), reason: ReasonLoop},
		{name: "hop limit", src: child, in: mustMarshal(t, far), reason: ReasonHopLimit},
		{name: "almost a v2 signature", src: device, in: []byte("\r\n\r\nGET"), rest: []byte("\r\n\r\nGET")},
		{name: "almost a v1 signature", src: child, in: []byte("PROXZ"), rest: []byte("PROXZ")},
		{name: "plain http", src: device, in: []byte("GET / HTTP/1.1\r\n"), rest: []byte("GET / HTTP/1.1\r\n")},
		{name: "nothing", src: device, in: nil},
		{name: "a lone P", src: device, in: []byte("P"), rest: []byte("P")},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := bytes.NewReader(c.in)
			h, pending, err := l4.Accept(r, c.src)
			if got := ReasonOf(err); got != c.reason || (err != nil) != (c.reason != "") {
				t.Fatalf("reason %q (%v), want %q", got, err, c.reason)
			}
			if c.reason != "" {
				return
			}
			if h.Hops != c.hops {
				t.Errorf("hops %d, want %d", h.Hops, c.hops)
			}
			rest, _ := io.ReadAll(r)
			if got := append(pending, rest...); !bytes.Equal(got, c.rest) {
				t.Errorf("stream after Accept %q, want %q", got, c.rest)
			}
		})
	}
}

// TestAcceptStalled: a child that stops inside the header is refused with the reader's error
// (the forwarder's hello deadline), not waited for.
func TestAcceptStalled(t *testing.T) {
	l4 := &Box{Name: "l4", Children: []netip.Prefix{netip.MustParsePrefix("198.18.3.0/24")}}
	b := mustMarshal(t, sample())
	r := io.MultiReader(bytes.NewReader(b[:30]), errReader{})
	_, _, err := l4.Accept(r, netip.MustParseAddr("198.18.3.2"))
	if ReasonOf(err) != ReasonBadHeader {
		t.Fatalf("%v", err)
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, timeoutError{} }

type timeoutError struct{}

func (timeoutError) Error() string   { return "i/o timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

func TestNextThroughThreeBoxes(t *testing.T) {
	dev := netip.MustParseAddrPort("198.18.2.10:5000")
	at := netip.MustParseAddrPort("198.18.2.1:443")
	l3 := &Box{Name: "l3", Level: 3}
	l4 := &Box{Name: "l4", Level: 4, Children: []netip.Prefix{netip.MustParsePrefix("198.18.3.2/32")}}
	l5 := &Box{Name: "l5", Level: 5, Children: []netip.Prefix{netip.MustParsePrefix("198.18.4.2/32")}}

	h3 := l3.Next(nil, dev, at, 11)
	got4, _, err := l4.Accept(bytes.NewReader(mustMarshal(t, h3)), netip.MustParseAddr("198.18.3.2"))
	if err != nil {
		t.Fatal(err)
	}
	h4 := l4.Next(&got4, netip.MustParseAddrPort("198.18.3.2:6000"), netip.MustParseAddrPort("198.18.3.1:443"), 22)
	got5, _, err := l5.Accept(bytes.NewReader(mustMarshal(t, h4)), netip.MustParseAddr("198.18.4.2"))
	if err != nil {
		t.Fatal(err)
	}
	want := Header{Device: dev, Dest: at, Hops: 2, ID: 22, Box: "l4", Level: 4, Path: []string{"l3", "l4"}}
	if !equal(got5, want) {
		t.Errorf("level 5 read %+v, want %+v", got5, want)
	}
	if len(got4.Path) != 1 {
		t.Errorf("Next changed the header it continued: %v", got4.Path)
	}
}

// TestLoopWithinHopLimit: two boxes that are each other's parent refuse the connection when
// it comes back to the first, long before the hop limit.
func TestLoopWithinHopLimit(t *testing.T) {
	a := &Box{Name: "a", Children: []netip.Prefix{netip.MustParsePrefix("198.18.9.2/32")}}
	b := &Box{Name: "b", Children: []netip.Prefix{netip.MustParsePrefix("198.18.9.1/32")}}
	h := a.Next(nil, netip.MustParseAddrPort("198.18.8.10:1"), netip.MustParseAddrPort("198.18.8.1:443"), 1)
	for hop := 1; hop <= DefaultMaxHops; hop++ {
		to, from := b, netip.MustParseAddr("198.18.9.1")
		if hop%2 == 0 {
			to, from = a, netip.MustParseAddr("198.18.9.2")
		}
		got, _, err := to.Accept(bytes.NewReader(mustMarshal(t, h)), from)
		if err != nil {
			if ReasonOf(err) != ReasonLoop || hop != 2 {
				t.Fatalf("hop %d: %v; want a loop at hop 2", hop, err)
			}
			return
		}
		h = to.Next(&got, netip.AddrPort{}, netip.AddrPort{}, uint64(hop))
	}
	t.Fatal("the loop was never refused")
}

func TestMaxHops(t *testing.T) {
	for _, c := range []struct{ set, want int }{{0, DefaultMaxHops}, {3, 3}, {99, MaxHops}} {
		if got := (&Box{MaxHops: c.set}).maxHops(); got != c.want {
			t.Errorf("MaxHops %d: %d, want %d", c.set, got, c.want)
		}
	}
}

// BenchmarkAccept is a parent's cost per connection from a child: sniff, read and parse a
// two-box header, check it, and build the next one.
func BenchmarkAccept(b *testing.B) {
	box := &Box{Name: "l5", Children: []netip.Prefix{netip.MustParsePrefix("198.18.4.0/24")}}
	src := netip.MustParseAddr("198.18.4.2")
	in := append(mustMarshal(b, sample()), hello...)
	r := bytes.NewReader(in)
	b.ReportAllocs()
	for b.Loop() {
		r.Reset(in)
		h, _, err := box.Accept(r, src)
		if err != nil {
			b.Fatal(err)
		}
		next := box.Next(&h, netip.AddrPort{}, netip.AddrPort{}, 1)
		if _, err := Marshal(&next); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAcceptDevice is the cost for a device's connection: one byte sniffed.
func BenchmarkAcceptDevice(b *testing.B) {
	box := &Box{Name: "l5"}
	src := netip.MustParseAddr("198.18.3.20")
	r := bytes.NewReader(hello)
	b.ReportAllocs()
	for b.Loop() {
		r.Reset(hello)
		if _, _, err := box.Accept(r, src); err != nil {
			b.Fatal(err)
		}
	}
}

func TestStreamAndAnnounce(t *testing.T) {
	l4 := &Box{Name: "l4", Children: []netip.Prefix{netip.MustParsePrefix("198.18.3.0/24")}}
	sample3 := sample()
	sample3.Path, sample3.Hops, sample3.Box = []string{"l3"}, 1, "l3"
	in := append(mustMarshal(t, sample3), hello...)
	r, h, err := l4.Stream(bytes.NewReader(in), netip.MustParseAddr("198.18.3.2"))
	if err != nil || h.Box != "l3" {
		t.Fatalf("%+v %v", h, err)
	}
	if rest, _ := io.ReadAll(r); !bytes.Equal(rest, hello) {
		t.Errorf("stream after the header %x", rest)
	}
	r, h, err = l4.Stream(bytes.NewReader(hello), netip.MustParseAddr("198.18.2.10"))
	if rest, _ := io.ReadAll(r); err != nil || h.Hops != 0 || !bytes.Equal(rest, hello) {
		t.Errorf("a device's stream: %+v %v %x", h, err, rest)
	}
	b, err := l4.Announce(&h, netip.MustParseAddrPort("198.18.2.10:1"), netip.MustParseAddrPort("198.18.2.1:443"), 5)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := Parse(b); err != nil || got.Hops != 1 || got.ID != 5 || got.Box != "l4" {
		t.Errorf("announced %+v %v", got, err)
	}
	if _, err := (&Box{Name: "no spaces"}).Announce(&Header{}, netip.MustParseAddrPort("198.18.2.10:1"), netip.MustParseAddrPort("198.18.2.1:443"), 5); ReasonOf(err) != ReasonBadHeader {
		t.Errorf("a name that cannot travel: %v", err)
	}
}
