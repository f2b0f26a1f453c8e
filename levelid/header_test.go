package levelid

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io"
	"net/netip"
	"strings"
	"testing"

	"github.com/lnm-project/lnm/allowlist"
)

func sample() Header {
	return Header{
		Device: netip.MustParseAddrPort("198.18.2.10:51234"),
		Dest:   netip.MustParseAddrPort("198.18.2.1:443"),
		Hops:   2, ID: 0x0102030405060708, Box: "l4", Level: 4,
		Path: []string{"l3", "l4"},
	}
}

func mustMarshal(t testing.TB, h Header) []byte {
	t.Helper()
	b, err := Marshal(&h)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func equal(a, b Header) bool {
	return a.Device == b.Device && a.Dest == b.Dest && a.Hops == b.Hops && a.ID == b.ID &&
		a.Box == b.Box && a.Level == b.Level && strings.Join(a.Path, "/") == strings.Join(b.Path, "/")
}

func TestRoundTrip(t *testing.T) {
	v6 := sample()
	v6.Device = netip.MustParseAddrPort("[2001:db8::10]:40000")
	v6.Dest = netip.MustParseAddrPort("[2001:db8::1]:8883")
	long := sample()
	long.Path = nil
	for i := range MaxHops {
		long.Path = append(long.Path, strings.Repeat(string(rune('a'+i)), MaxNameLen))
	}
	long.Hops, long.Box = MaxHops, long.Path[MaxHops-1]
	for name, h := range map[string]Header{"v4": sample(), "v6": v6, "largest": long} {
		t.Run(name, func(t *testing.T) {
			b := mustMarshal(t, h)
			if len(b) > MaxSize {
				t.Fatalf("%d bytes, over MaxSize %d", len(b), MaxSize)
			}
			if name == "largest" && len(b) != MaxSize-(addrLen-12) && len(b) != MaxSize {
				t.Errorf("largest header is %d bytes; MaxSize %d is not its bound", len(b), MaxSize)
			}
			got, err := Parse(b)
			if err != nil {
				t.Fatal(err)
			}
			if !equal(got, h) {
				t.Errorf("got %+v, want %+v", got, h)
			}
			read, err := Read(io.MultiReader(bytes.NewReader(b), strings.NewReader("\x16\x03\x01")))
			if err != nil || !bytes.Equal(read, b) {
				t.Errorf("Read = %x, %v; want the header alone", read, err)
			}
		})
	}
}

// TestNoProperPrefixParses: a header cut anywhere is refused, as a bad header.
func TestNoProperPrefixParses(t *testing.T) {
	b := mustMarshal(t, sample())
	for i := range len(b) {
		if _, err := Parse(b[:i]); ReasonOf(err) != ReasonBadHeader {
			t.Fatalf("prefix of %d bytes: %v", i, err)
		}
		if _, err := Read(bytes.NewReader(b[:i])); ReasonOf(err) != ReasonBadHeader {
			t.Fatalf("Read of a prefix of %d bytes: %v", i, err)
		}
	}
}

// tlv builds one TLV's bytes.
func tlv(typ byte, v []byte) []byte {
	return append([]byte{typ, byte(len(v) >> 8), byte(len(v))}, v...)
}

// build makes a v2 header over TCPv4 from raw TLV bytes, with the command and family given.
func build(cmd, fam byte, tlvs ...[]byte) []byte {
	body := []byte{198, 18, 2, 10, 198, 18, 2, 1, 0xc8, 0x22, 0x01, 0xbb}
	for _, t := range tlvs {
		body = append(body, t...)
	}
	b := append([]byte("\r\n\r\n\x00\r\nQUIT\n"), cmd, fam)
	b = binary.BigEndian.AppendUint16(b, uint16(len(body)))
	return append(b, body...)
}

func TestParseRefuses(t *testing.T) {
	hops := tlv(0xE0, []byte{1})
	id := tlv(0xE1, make([]byte, 8))
	box := tlv(0xE2, []byte("l3"))
	level := tlv(0xE3, []byte{3})
	path := tlv(0xE4, []byte("\x02l3"))
	good := build(0x21, 0x11, hops, id, box, level, path)
	if _, err := Parse(good); err != nil {
		t.Fatalf("the table's base case does not parse: %v", err)
	}
	cases := map[string][]byte{
		"empty":            nil,
		"v1":               []byte("PROXY TCP4 198.18.2.10 198.18.2.1 51234 443\r\n"),
		"tls":              {0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03, 0, 0, 0, 0, 0},
		"local command":    build(0x20, 0x11, hops, id, box, level, path),
		"udp":              build(0x21, 0x12, hops, id, box, level, path),
		"unix":             build(0x21, 0x31),
		"version 3":        build(0x31, 0x11, hops, id, box, level, path),
		"no hops":          build(0x21, 0x11, id, box, level, path),
		"no id":            build(0x21, 0x11, hops, box, level, path),
		"no box":           build(0x21, 0x11, hops, id, level, path),
		"no level":         build(0x21, 0x11, hops, id, box, path),
		"no path":          build(0x21, 0x11, hops, id, box, level),
		"hops twice":       build(0x21, 0x11, hops, hops, id, box, level, path),
		"other TLV":        build(0x21, 0x11, hops, id, box, level, path, tlv(0xE5, nil)),
		"noop TLV":         build(0x21, 0x11, hops, id, box, level, path, tlv(0x04, nil)),
		"hops zero":        build(0x21, 0x11, tlv(0xE0, []byte{0}), id, box, level, tlv(0xE4, nil)),
		"hops two bytes":   build(0x21, 0x11, tlv(0xE0, []byte{0, 1}), id, box, level, path),
		"hops not path":    build(0x21, 0x11, tlv(0xE0, []byte{2}), id, box, level, path),
		"hops over max":    build(0x21, 0x11, tlv(0xE0, []byte{17}), id, box, level, path),
		"short id":         build(0x21, 0x11, hops, tlv(0xE1, make([]byte, 7)), box, level, path),
		"empty box":        build(0x21, 0x11, hops, id, tlv(0xE2, nil), level, path),
		"box not last":     build(0x21, 0x11, hops, id, tlv(0xE2, []byte("l4")), level, path),
		"box with space":   build(0x21, 0x11, hops, id, tlv(0xE2, []byte("l 3")), level, tlv(0xE4, []byte("\x03l 3"))),
		"box with newline": build(0x21, 0x11, hops, id, tlv(0xE2, []byte("l\n")), level, tlv(0xE4, []byte("\x02l\n"))),
		"level 6":          build(0x21, 0x11, hops, id, box, tlv(0xE3, []byte{6}), path),
		"empty path name":  build(0x21, 0x11, hops, id, box, level, tlv(0xE4, []byte("\x00\x02l3"))),
		"path overrun":     build(0x21, 0x11, hops, id, box, level, tlv(0xE4, []byte("\x05l3"))),
		"truncated TLV":    build(0x21, 0x11, hops, id, box, level, path, []byte{0xE5, 0}),
		"trailing byte":    append(bytes.Clone(good), 0),
		"short length":     func() []byte { b := bytes.Clone(good); b[15]--; return b }(),
		"too large":        append(append(bytes.Clone(good[:14]), 0xff, 0xff), make([]byte, 65535)...),
	}
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			h, err := Parse(b)
			if ReasonOf(err) != ReasonBadHeader {
				t.Fatalf("Parse = %+v, %v; want a %s error", h, err, ReasonBadHeader)
			}
		})
	}
}

func TestMarshalRefuses(t *testing.T) {
	mixed := sample()
	mixed.Dest = netip.MustParseAddrPort("[2001:db8::1]:443")
	mapped := sample()
	mapped.Device = netip.MustParseAddrPort("[::ffff:198.18.2.10]:1")
	mapped.Dest = netip.MustParseAddrPort("[2001:db8::1]:443")
	cases := map[string]Header{
		"zero":   {},
		"mixed":  mixed,
		"mapped": mapped,
		"path too long": func() Header {
			h := sample()
			h.Path = make([]string, MaxHops+1)
			for i := range h.Path {
				h.Path[i] = "b"
			}
			h.Hops, h.Box = MaxHops+1, "b"
			return h
		}(),
		"long name": func() Header {
			h := sample()
			h.Box = strings.Repeat("x", MaxNameLen+1)
			h.Path[1] = h.Box
			return h
		}(),
	}
	for name, h := range cases {
		t.Run(name, func(t *testing.T) {
			if b, err := Marshal(&h); ReasonOf(err) != ReasonBadHeader {
				t.Fatalf("Marshal = %x, %v", b, err)
			}
		})
	}
}

// TestReadStopsAtHeader: Read never takes a byte of what follows, and refuses an oversize
// length before reading it.
func TestReadStopsAtHeader(t *testing.T) {
	b := mustMarshal(t, sample())
	r := bytes.NewReader(append(bytes.Clone(b), "hello"...))
	if _, err := Read(r); err != nil {
		t.Fatal(err)
	}
	if rest, _ := io.ReadAll(r); string(rest) != "hello" {
		t.Errorf("left %q, want hello", rest)
	}
	big := append(bytes.Clone(b[:14]), 0x10, 0x00) // 4096 bytes announced
	r = bytes.NewReader(append(big, make([]byte, 4096)...))
	if _, err := Read(r); ReasonOf(err) != ReasonBadHeader {
		t.Fatalf("oversize: %v", err)
	}
	if r.Len() != 4096 {
		t.Errorf("Read took %d bytes of an oversize header's body", 4096-r.Len())
	}
}

func TestErrorWraps(t *testing.T) {
	_, err := Read(bytes.NewReader(nil))
	var e *Error
	if !errors.As(err, &e) || !errors.Is(err, io.EOF) || e.Reason != ReasonBadHeader {
		t.Fatalf("%#v", err)
	}
	if !strings.HasPrefix(err.Error(), "levelid: bad_proxy_header: ") {
		t.Errorf("message %q", err)
	}
	if ReasonOf(errors.New("x")) != "" {
		t.Error("ReasonOf of another error")
	}
	want := map[allowlist.Reason]bool{ReasonRefused: true, ReasonBadHeader: true, ReasonHopLimit: true, ReasonLoop: true}
	for _, r := range Reasons() {
		delete(want, r)
	}
	if len(want) > 0 {
		t.Errorf("Reasons() misses %v", want)
	}
}

// TestWireFormat pins the bytes of one header, so a change of encoding is a decision.
func TestWireFormat(t *testing.T) {
	h := Header{
		Device: netip.MustParseAddrPort("198.18.2.10:51234"), Dest: netip.MustParseAddrPort("198.18.2.1:443"),
		Hops: 1, ID: 7, Box: "l3", Level: 3, Path: []string{"l3"},
	}
	const want = "0d0a0d0a000d0a515549540a" + "2111" + "002a" +
		"c612020a" + "c6120201" + "c822" + "01bb" +
		"e0000101" + "e100080000000000000007" + "e200026c33" + "e3000103" + "e40003026c33"
	if got := hex.EncodeToString(mustMarshal(t, h)); got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}
