package resolver

import (
	"errors"
	"net"
	"time"

	"github.com/miekg/dns"
)

// The header bits of a reply. RFC 1035 §4.1.1 has a server copy the ID, the opcode and RD
// into its reply (RFC 6840 §5.9 adds CD); every other bit is the server's own. The box is
// never recursive (RA 0), validates nothing (AD 0), and Z must be zero. miekg/dns answers a
// message it rejects (one that does not unpack) with the request itself, so without care
// such a reply echoes whatever bits the request set: RA among them, a claim to offer
// recursion.

// acceptMsg is the servers' MsgAcceptFunc: ignore responses, accept everything else, so that
// the handler answers unknown opcodes and wrong section counts with a fresh reply and an
// audit record, instead of miekg/dns's echo of the request.
func acceptMsg(dh dns.Header) dns.MsgAcceptAction {
	const qr = 1 << 15
	if dh.Bits&qr != 0 {
		return dns.MsgIgnore
	}
	return dns.MsgAccept
}

// Flag bits in the two header bytes after the ID (RFC 1035 §4.1.1, RFC 2535 §6.1).
const (
	flagAA = 0x04 // first byte
	flagTC = 0x02
	flagRA = 0x80 // second byte
	flagZ  = 0x40
	flagAD = 0x20
)

// ownBits clears, in a packed reply, the bits that are the server's own and that the box
// never sets: RA, Z and AD always, and on a FORMERR or NOTIMP (the replies miekg/dns builds
// from a request it could not unpack) AA and TC too.
func ownBits(msg []byte) {
	if len(msg) < 4 {
		return
	}
	msg[3] &^= flagRA | flagZ | flagAD
	if rcode := int(msg[3] & 0x0f); rcode == dns.RcodeFormatError || rcode == dns.RcodeNotImplemented {
		msg[2] &^= flagAA | flagTC
	}
}

// ownBitsWriter applies ownBits to every reply written, the handler's and miekg/dns's own.
type ownBitsWriter struct{ dns.Writer }

func (w ownBitsWriter) Write(msg []byte) (int, error) {
	ownBits(msg)
	return w.Writer.Write(msg)
}

func decorateWriter(w dns.Writer) dns.Writer { return ownBitsWriter{w} }

// errShortMessage ends a TCP connection whose next message cannot even hold a header: a
// length of zero, or a few stray bytes. miekg/dns would skip it and wait for the next one for
// the idle timeout; a peer that frames garbage gets its connection closed at once.
var errShortMessage = errors.New("resolver: a TCP message shorter than a DNS header")

// tcpReader closes the connection on a message too short to be DNS (see errShortMessage).
type tcpReader struct{ dns.Reader }

func (r tcpReader) ReadTCP(conn net.Conn, timeout time.Duration) ([]byte, error) {
	m, err := r.Reader.ReadTCP(conn, timeout)
	if err == nil && len(m) < dnsHeaderLen {
		return nil, errShortMessage
	}
	return m, err
}

// dnsHeaderLen is the fixed header's size (RFC 1035 §4.1.1).
const dnsHeaderLen = 12
