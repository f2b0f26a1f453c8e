package levelid

import (
	"bytes"
	"fmt"
	"io"
	"net/netip"
	"slices"

	proxyproto "github.com/pires/go-proxyproto"
)

// Box is one box's side of level identity (`level_identity on [HOPS]`). Its methods are
// safe for concurrent use; a Box is not changed once in use.
type Box struct {
	// Name is this box's name: it is added to the path of every header the box sends and
	// looked for in every header it reads.
	Name string
	// Level is this box's level, sent with its name.
	Level int
	// MaxHops is the most boxes a connection may pass, this one included. Zero:
	// DefaultMaxHops.
	MaxHops int
	// Children are the sources whose header is read; from any other source a PROXY header
	// is refused. Empty: none.
	Children []netip.Prefix
}

func (b *Box) maxHops() int {
	if b.MaxHops <= 0 {
		return DefaultMaxHops
	}
	return min(b.MaxHops, MaxHops)
}

func (b *Box) child(src netip.Addr) bool {
	src = src.Unmap()
	for _, p := range b.Children {
		if p.Contains(src) {
			return true
		}
	}
	return false
}

// signatures are how the two PROXY versions begin; sniffLen is the longer of the parts
// Accept compares, enough to tell them from a TLS record (which begins 0x16).
var (
	sigV1 = []byte("PROXY ")
	sigV2 = proxyproto.SIGV2
)

// Accept reads how a connection from src begins, before its ClientHello. From a child, a
// PROXY v2 header is read whole and checked (Check); a child that sends none (its box runs
// without level identity) is let through as before. From anyone else, a PROXY header of
// either version is refused (ReasonRefused).
//
// It returns the header (the zero Header when there was none) and the bytes it read that
// are not a header: the start of the device's stream, to be read again before the rest. A
// header refused by Check (a loop, the hop limit) is returned with the error, for the record.
// Errors are *Error. A read error before a signature is complete is not Accept's to judge:
// the bytes read so far are returned with no error, and the hello reader meets the error
// again.
func (b *Box) Accept(r io.Reader, src netip.Addr) (Header, []byte, error) {
	var first [1]byte
	if _, err := io.ReadFull(r, first[:]); err != nil {
		return Header{}, nil, nil
	}
	if first[0] != sigV1[0] && first[0] != sigV2[0] {
		return Header{}, first[:], nil // a TLS record, or something the hello reader refuses
	}
	// Enough to tell either signature: v1's six bytes, or v2's twelve.
	sig := sigV1
	if first[0] == sigV2[0] {
		sig = sigV2
	}
	start := append(make([]byte, 0, len(sig)), first[0])
	for len(start) < len(sig) && start[len(start)-1] == sig[len(start)-1] {
		var c [1]byte
		if _, err := io.ReadFull(r, c[:]); err != nil {
			return Header{}, start, nil
		}
		start = append(start, c[0])
	}
	if !bytes.Equal(start, sig) {
		return Header{}, start, nil // not a PROXY header after all
	}
	if !b.child(src) {
		return Header{}, nil, &Error{Reason: ReasonRefused, Err: fmt.Errorf("%s is not a child box and sent a PROXY header", src)}
	}
	if first[0] == sigV1[0] {
		return Header{}, nil, badf("PROXY v1 header: children speak v2")
	}
	raw, err := Read(io.MultiReader(bytes.NewReader(start), r))
	if err != nil {
		return Header{}, nil, err
	}
	h, err := Parse(raw)
	if err != nil {
		return Header{}, nil, err
	}
	return h, nil, b.Check(&h)
}

// Check refuses a parsed header that came round a loop (this box's name in its path) or that
// passed as many boxes as this one allows.
func (b *Box) Check(h *Header) error {
	if slices.Contains(h.Path, b.Name) {
		return &Error{Reason: ReasonLoop, Err: fmt.Errorf("box %s is already in the path %v: its parents form a loop", b.Name, h.Path)}
	}
	if h.Hops >= b.maxHops() {
		return &Error{Reason: ReasonHopLimit, Err: fmt.Errorf("the connection passed %d boxes %v, and %d may pass", h.Hops, h.Path, b.maxHops())}
	}
	return nil
}

// Next is the header this box sends its parent for a connection with the given id. from is
// the header the connection arrived with (zero: it came from a device, whose address and the
// address it connected to are client and local).
func (b *Box) Next(from *Header, client, local netip.AddrPort, id uint64) Header {
	h := Header{Device: unmapped(client), Dest: unmapped(local), Hops: 1, ID: id, Box: b.Name, Level: b.Level, Path: []string{b.Name}}
	if from != nil && from.Hops > 0 {
		h.Device, h.Dest = from.Device, from.Dest
		h.Hops = from.Hops + 1
		h.Path = append(slices.Clip(from.Path), b.Name)
	}
	return h
}

// Stream is Accept for a reader the rest of the connection is read from: it returns that
// reader (the bytes Accept read and did not keep come first), the header, and Accept's error.
func (b *Box) Stream(r io.Reader, src netip.Addr) (io.Reader, Header, error) {
	h, pending, err := b.Accept(r, src)
	if err != nil || len(pending) == 0 {
		return r, h, err
	}
	return io.MultiReader(bytes.NewReader(pending), r), h, nil
}

// Announce returns the bytes of the header Next makes.
func (b *Box) Announce(from *Header, client, local netip.AddrPort, id uint64) ([]byte, error) {
	h := b.Next(from, client, local, id)
	return Marshal(&h)
}
