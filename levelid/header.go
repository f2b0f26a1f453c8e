// Package levelid is the identity header a child box sends its parent first on every
// connection it forwards upward (`level_identity on`), so that the box at the top of a plant
// can name the device that opened a connection, not only the box one level down.
//
// The header is a PROXY protocol v2 header (github.com/pires/go-proxyproto does the framing):
// its source address is the device's, its destination the address the device connected to at
// the first box, and five TLVs in the range the protocol leaves to applications (0xE0–0xEF,
// §2.2.8 of the PROXY protocol text) carry the rest:
//
//	0xE0  hops   1 byte     boxes the connection passed so far, the sender included
//	0xE1  id     8 bytes    the sender's connection id (its open and close records' "id")
//	0xE2  box    1–63 bytes the sender's name
//	0xE3  level  1 byte     the sender's level (0–5)
//	0xE4  path   names      every box so far, first box first, each a 1-byte length and name
//
// A parent reads the header only from its children (Box.Children); anyone else that sends a
// PROXY header is refused, so a device cannot claim another device's address. A parent finds
// its own name in the path (a loop of `parent` settings) or a hop count at its limit, and
// refuses the connection. Everything here is a pure function of bytes and settings; the
// forwarder calls it.
package levelid

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"

	"github.com/lnm-project/lnm/allowlist"
	proxyproto "github.com/pires/go-proxyproto"
)

// Reasons a connection is refused for its header: the words of the audit log.
const (
	// ReasonRefused: a PROXY header (v1 or v2) from a source that is not one of the box's
	// children: a device must not be able to speak for another address.
	ReasonRefused allowlist.Reason = "proxy_header_refused"
	// ReasonBadHeader: a child's connection began with a PROXY signature but not with a
	// well-formed level-identity header (see Parse).
	ReasonBadHeader allowlist.Reason = "bad_proxy_header"
	// ReasonHopLimit: the connection already passed as many boxes as this one allows.
	ReasonHopLimit allowlist.Reason = "hop_limit"
	// ReasonLoop: this box's own name is in the path: the connection came round a loop of
	// `parent` settings.
	ReasonLoop allowlist.Reason = "loop"
)

// Reasons lists the reasons the package defines, for documentation tests.
func Reasons() []allowlist.Reason {
	return []allowlist.Reason{ReasonRefused, ReasonBadHeader, ReasonHopLimit, ReasonLoop}
}

// The TLV types, in the PROXY protocol's application range.
const (
	tlvHops  proxyproto.PP2Type = 0xE0
	tlvID    proxyproto.PP2Type = 0xE1
	tlvBox   proxyproto.PP2Type = 0xE2
	tlvLevel proxyproto.PP2Type = 0xE3
	tlvPath  proxyproto.PP2Type = 0xE4
)

// Bounds of a header.
const (
	// MaxHops is the most boxes a path may name, and the highest hop limit a box may set.
	MaxHops = 16
	// DefaultMaxHops is the hop limit of `level_identity on` without a number.
	DefaultMaxHops = 8
	// MaxNameLen is the longest box name a header carries (a DNS label's length).
	MaxNameLen = 63
	// MaxLevel is the highest Purdue level.
	MaxLevel = 5

	fixedLen = 16 // signature, version and command, family, length
	addrLen  = 36 // the IPv6 address block; IPv4 takes 12
	// MaxSize bounds a whole header: the fixed part, the IPv6 addresses, and the five TLVs
	// at their largest. Read refuses a longer one before reading it.
	MaxSize = fixedLen + addrLen + (3 + 1) + (3 + 8) + (3 + MaxNameLen) + (3 + 1) + (3 + MaxHops*(1+MaxNameLen))
)

// Header is what a child box tells its parent about one connection it forwards. The zero
// Header (Hops 0) stands for "no header": the connection came straight from a device, or
// from a child that does not send one.
type Header struct {
	// Device is the address and port of the device that opened the connection at the first
	// box; Dest the address and port it connected to there. Both are of one family.
	Device, Dest netip.AddrPort
	// Hops counts the boxes the connection passed, the sender included: 1 from the first.
	Hops int
	// ID is the sender's connection id for it, which its open and close records carry.
	ID uint64
	// Box and Level are the sender's name and level.
	Box   string
	Level int
	// Path names every box so far, first box first; its last name is Box and its length Hops.
	Path []string
}

// Error is why a header was refused. Reason is one of the package's reasons.
type Error struct {
	Reason allowlist.Reason
	Err    error
}

func (e *Error) Error() string { return "levelid: " + string(e.Reason) + ": " + e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

func badf(format string, args ...any) error {
	return &Error{Reason: ReasonBadHeader, Err: fmt.Errorf(format, args...)}
}

// ValidName reports whether name can travel in a header: 1 to 63 bytes of letters, digits,
// '-', '_' and '.', the characters of a host name.
func ValidName(name string) bool {
	if name == "" || len(name) > MaxNameLen {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// Validate checks what Marshal writes and Parse accepts: addresses of one family, a hop
// count from 1 to MaxHops that is the path's length, valid names, Box last in the path,
// and a level from 0 to MaxLevel.
func (h *Header) Validate() error {
	dev, dst := h.Device.Addr(), h.Dest.Addr()
	switch {
	case !dev.IsValid() || !dst.IsValid():
		return badf("no device or destination address")
	case dev.Is4() != dst.Is4() || dev.Is4In6() || dst.Is4In6() || dev.Zone() != "" || dst.Zone() != "":
		return badf("device %s and destination %s are not plain addresses of one family", h.Device, h.Dest)
	case h.Hops < 1 || h.Hops > MaxHops:
		return badf("hop count %d, want 1 to %d", h.Hops, MaxHops)
	case len(h.Path) != h.Hops:
		return badf("hop count %d but %d boxes in the path", h.Hops, len(h.Path))
	case h.Level < 0 || h.Level > MaxLevel:
		return badf("level %d, want 0 to %d", h.Level, MaxLevel)
	case !ValidName(h.Box):
		return badf("box name %q", h.Box)
	case h.Path[len(h.Path)-1] != h.Box:
		return badf("box %q is not the last in the path %v", h.Box, h.Path)
	}
	for _, n := range h.Path {
		if !ValidName(n) {
			return badf("box name %q in the path", n)
		}
	}
	return nil
}

// Marshal returns the header's bytes. It refuses a header Validate refuses.
func Marshal(h *Header) ([]byte, error) {
	if err := h.Validate(); err != nil {
		return nil, err
	}
	ph := &proxyproto.Header{
		Version:           2,
		Command:           proxyproto.PROXY,
		TransportProtocol: proxyproto.TCPv4,
		SourceAddr:        net.TCPAddrFromAddrPort(h.Device),
		DestinationAddr:   net.TCPAddrFromAddrPort(h.Dest),
	}
	if h.Device.Addr().Is6() {
		ph.TransportProtocol = proxyproto.TCPv6
	}
	id := binary.BigEndian.AppendUint64(nil, h.ID)
	var path []byte
	for _, n := range h.Path {
		path = append(path, byte(len(n)))
		path = append(path, n...)
	}
	err := ph.SetTLVs([]proxyproto.TLV{
		{Type: tlvHops, Value: []byte{byte(h.Hops)}},
		{Type: tlvID, Value: id},
		{Type: tlvBox, Value: []byte(h.Box)},
		{Type: tlvLevel, Value: []byte{byte(h.Level)}},
		{Type: tlvPath, Value: path},
	})
	if err != nil {
		return nil, fmt.Errorf("levelid: %w", err)
	}
	b, err := ph.Format()
	if err != nil {
		return nil, fmt.Errorf("levelid: %w", err)
	}
	return b, nil
}

// Parse reads one whole header, exactly the bytes Read returns: a PROXY v2 PROXY command over
// TCP, each of the five TLVs exactly once and no other, every field as Validate wants it.
// Every refusal is an *Error with ReasonBadHeader.
func Parse(b []byte) (Header, error) {
	var h Header
	if len(b) > MaxSize {
		return h, badf("%d bytes, over %d", len(b), MaxSize)
	}
	if len(b) < fixedLen || !bytes.Equal(b[:12], proxyproto.SIGV2) {
		return h, badf("no PROXY v2 signature")
	}
	if n := fixedLen + int(binary.BigEndian.Uint16(b[14:16])); n != len(b) {
		return h, badf("length field says %d bytes, have %d", n, len(b))
	}
	ph, err := proxyproto.Read(bufio.NewReaderSize(bytes.NewReader(b), 16))
	if err != nil {
		return h, badf("%v", err)
	}
	if ph.Command != proxyproto.PROXY || (ph.TransportProtocol != proxyproto.TCPv4 && ph.TransportProtocol != proxyproto.TCPv6) {
		return h, badf("command %#x, family %#x: want PROXY over TCP", byte(ph.Command), byte(ph.TransportProtocol))
	}
	src, sok := ph.SourceAddr.(*net.TCPAddr)
	dst, dok := ph.DestinationAddr.(*net.TCPAddr)
	if !sok || !dok {
		return h, badf("addresses are not TCP addresses")
	}
	h.Device, h.Dest = unmapped(src.AddrPort()), unmapped(dst.AddrPort())
	if ph.TransportProtocol == proxyproto.TCPv6 && (h.Device.Addr().Is4() || h.Dest.Addr().Is4()) {
		return h, badf("IPv4-mapped addresses in an IPv6 header")
	}
	tlvs, err := ph.TLVs()
	if err != nil {
		return h, badf("%v", err)
	}
	seen := map[proxyproto.PP2Type]bool{}
	for _, t := range tlvs {
		if seen[t.Type] {
			return h, badf("TLV %#x twice", byte(t.Type))
		}
		seen[t.Type] = true
		v := t.Value
		switch t.Type {
		case tlvHops:
			if len(v) != 1 {
				return h, badf("hops TLV of %d bytes", len(v))
			}
			h.Hops = int(v[0])
		case tlvID:
			if len(v) != 8 {
				return h, badf("id TLV of %d bytes", len(v))
			}
			h.ID = binary.BigEndian.Uint64(v)
		case tlvBox:
			h.Box = string(v)
		case tlvLevel:
			if len(v) != 1 {
				return h, badf("level TLV of %d bytes", len(v))
			}
			h.Level = int(v[0])
		case tlvPath:
			for len(v) > 0 {
				n := int(v[0])
				if n == 0 || 1+n > len(v) {
					return h, badf("path TLV: a name of %d bytes with %d left", n, len(v)-1)
				}
				if len(h.Path) == MaxHops {
					return h, badf("path of more than %d boxes", MaxHops)
				}
				h.Path = append(h.Path, string(v[1:1+n]))
				v = v[1+n:]
			}
		default:
			return h, badf("unexpected TLV %#x", byte(t.Type))
		}
	}
	for _, t := range []proxyproto.PP2Type{tlvHops, tlvID, tlvBox, tlvLevel, tlvPath} {
		if !seen[t] {
			return h, badf("no TLV %#x", byte(t))
		}
	}
	if err := h.Validate(); err != nil {
		return h, err
	}
	return h, nil
}

func unmapped(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// Read reads exactly one header from r, the 16 fixed bytes and as many more as their length
// field says, and never a byte beyond it: what follows is the device's TLS stream. A header
// longer than MaxSize is refused before its body is read. The bytes are for Parse.
func Read(r io.Reader) ([]byte, error) {
	b := make([]byte, fixedLen, 256)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, badf("reading the header: %w", err)
	}
	if !bytes.Equal(b[:12], proxyproto.SIGV2) {
		return nil, badf("no PROXY v2 signature")
	}
	n := int(binary.BigEndian.Uint16(b[14:16]))
	if fixedLen+n > MaxSize {
		return nil, badf("header of %d bytes, over %d", fixedLen+n, MaxSize)
	}
	b = slices.Grow(b, n)[:fixedLen+n]
	if _, err := io.ReadFull(r, b[fixedLen:]); err != nil {
		return nil, badf("reading the header: %w", err)
	}
	return b, nil
}

// ReasonOf returns the reason of an *Error in err's chain, or "" when there is none.
func ReasonOf(err error) allowlist.Reason {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return ""
}
