// Package clienthello reads a TLS ClientHello off a connection without terminating TLS: the
// bounded record reader (every framing, split and size fault a typed Error with its audit
// reason) and the parser that takes the SNI, ALPN and ECH flag the forwarder decides on.
package clienthello

import (
	"errors"
	"fmt"
	"io"
	"net"
	"slices"

	"golang.org/x/crypto/cryptobyte"

	"github.com/lnm-project/lnm/allowlist"
)

// MaxSize is the default cap on a ClientHello handshake message. Post-quantum key shares
// make real hellos 1.6–2.5 KB; nginx, Envoy and caddy-l4 all settled on 16 KiB.
const MaxSize = 16384

// Why a ClientHello was rejected (Error.Reason), each the word written to the audit log.
const (
	// ReasonNotTLS: the first bytes are not a TLS handshake record (plain HTTP, a PROXY
	// header, an SSH client, an SSLv2-compatible hello, zero bytes).
	ReasonNotTLS allowlist.Reason = "not_tls"
	// ReasonTooLarge: the handshake message, a record, or the bytes buffered for it
	// exceed the cap.
	ReasonTooLarge allowlist.Reason = "client_hello_too_large"
	// ReasonTimeout: the reader's deadline passed before the hello was complete.
	ReasonTimeout allowlist.Reason = "clienthello_timeout"
	// ReasonMalformed: TLS records arrived, but they do not carry one well-formed
	// ClientHello (another record or handshake type, a zero-length fragment, bad framing,
	// a duplicated extension, a broken ALPN list).
	ReasonMalformed allowlist.Reason = "malformed_hello"
	// ReasonNoSNI: a well-formed hello without a server_name extension.
	ReasonNoSNI allowlist.Reason = "no_sni"
	// ReasonBadSNI: the server_name extension does not carry exactly one usable host name.
	ReasonBadSNI allowlist.Reason = "bad_sni"
	// ReasonClientClosed: the stream ended or failed before a full hello arrived.
	ReasonClientClosed allowlist.Reason = "client_closed"
)

// Error is why a connection's ClientHello was rejected; Reason is the audit word.
type Error struct {
	Reason allowlist.Reason // one of the reasons above
	Err    error            // the detail; for read failures, the reader's error
}

func (e *Error) Error() string {
	if e.Err == nil {
		return "client hello: " + string(e.Reason)
	}
	return "client hello: " + string(e.Reason) + ": " + e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }

func errorf(reason allowlist.Reason, format string, args ...any) error {
	return &Error{Reason: reason, Err: fmt.Errorf(format, args...)}
}

// Hello is what the forwarder needs from a ClientHello. Nothing in it is raw client text.
type Hello struct {
	// SNI is the server_name host_name, normalized by allowlist.ParseName.
	SNI allowlist.Name
	// ALPN is the client's application_layer_protocol_negotiation list in its order; nil if
	// the extension is absent.
	ALPN []string
	// ECH reports an encrypted_client_hello extension (0xfe0d). SNI is then the outer,
	// public name, and that is the only name the forwarder may decide on (RFC 9849).
	ECH bool
	// Version is the hello's legacy_version (0x0303 for TLS 1.2 and 1.3 clients).
	Version uint16
	// Size is the handshake message's declared length (RFC 8446 §4 Handshake.length, the
	// body without its 4-byte header): the number Read's maxSize bounds.
	Size int
}

// Wire constants, RFC 8446 §5.1, §4 and §4.2.
const (
	recordTypeHandshake      = 22
	recordHeaderLen          = 5
	recordMaxPlaintext       = 1 << 14 // RFC 8446 §5.1: above this is record_overflow
	handshakeHeaderLen       = 4
	handshakeTypeClientHello = 1

	extServerName = 0      // RFC 6066 §3
	extALPN       = 16     // RFC 7301 §3.1
	extECH        = 0xfe0d // RFC 9849 §5
	sniHostName   = 0      // RFC 6066 §3 NameType host_name
	sniMaxLen     = 253    // RFC 1035 §2.3.4, in text form without the trailing dot
)

// Parse parses one complete ClientHello handshake message: the 4-byte handshake
// header and its body, as reassembled from the handshake records, consumed exactly. It does no
// I/O. A handshake type other than client_hello is ReasonMalformed: the bytes were framed
// as TLS, so the peer speaks TLS, just not a client's first flight.
// On error the Hello keeps what was parsed before the fault (Version, ALPN, ECH, for the
// audit record), never an SNI.
func Parse(msg []byte) (Hello, error) {
	var h Hello
	s := cryptobyte.String(msg)
	var typ uint8
	var body cryptobyte.String
	if !s.ReadUint8(&typ) || !s.ReadUint24LengthPrefixed(&body) || !s.Empty() {
		return h, errorf(ReasonMalformed, "handshake length does not match the %d bytes given", len(msg))
	}
	if typ != handshakeTypeClientHello {
		return h, errorf(ReasonMalformed, "handshake type %d, want client_hello", typ)
	}
	h.Size = len(body)

	var sessionID, suites, compression, exts cryptobyte.String
	if !body.ReadUint16(&h.Version) || // legacy_version, RFC 8446 §4.1.2
		!body.Skip(32) || // random
		!body.ReadUint8LengthPrefixed(&sessionID) || len(sessionID) > 32 || // legacy_session_id<0..32>
		!body.ReadUint16LengthPrefixed(&suites) || len(suites) < 2 || len(suites)%2 != 0 || // cipher_suites<2..2^16-2>
		!body.ReadUint8LengthPrefixed(&compression) || len(compression) < 1 { // legacy_compression_methods<1..2^8-1>
		return h, errorf(ReasonMalformed, "bad fixed fields")
	}
	if body.Empty() {
		// RFC 5246 §7.4.1.2: a TLS 1.2 hello may stop before the extensions; then it has no SNI.
		return h, errorf(ReasonNoSNI, "hello has no extensions")
	}
	if !body.ReadUint16LengthPrefixed(&exts) || !body.Empty() { // extensions<8..2^16-1>
		return h, errorf(ReasonMalformed, "extensions block does not end the message")
	}

	var seen extensionSet
	var sni cryptobyte.String
	haveSNI := false
	for !exts.Empty() {
		var ext uint16
		var data cryptobyte.String
		if !exts.ReadUint16(&ext) || !exts.ReadUint16LengthPrefixed(&data) {
			return h, errorf(ReasonMalformed, "truncated extension")
		}
		// RFC 8446 §4.2: no extension type may appear twice. Two server_name extensions are
		// how a hello would show one name to us and another to the server.
		if !seen.add(ext) {
			return h, errorf(ReasonMalformed, "extension %d appears twice", ext)
		}
		switch ext {
		case extServerName:
			sni, haveSNI = data, true
		case extALPN:
			alpn, ok := parseALPN(data)
			if !ok {
				return h, errorf(ReasonMalformed, "bad application_layer_protocol_negotiation extension")
			}
			h.ALPN = alpn
		case extECH:
			h.ECH = true
		}
	}
	// The name is judged only after the whole hello proved well framed, so one broken hello
	// always gets one reason.
	if !haveSNI {
		return h, errorf(ReasonNoSNI, "no server_name extension")
	}
	name, err := parseServerName(sni)
	if err != nil {
		return h, &Error{Reason: ReasonBadSNI, Err: err}
	}
	h.SNI = name
	return h, nil
}

// extensionSet holds the extension types seen so far. A bitmap keeps the duplicate check O(1)
// per extension however many a hostile hello carries; it lives on the stack.
type extensionSet [1 << 16 / 64]uint64

// add records ext and reports whether it was new.
func (s *extensionSet) add(ext uint16) bool {
	w, bit := ext/64, uint64(1)<<(ext%64)
	if s[w]&bit != 0 {
		return false
	}
	s[w] |= bit
	return true
}

// parseServerName returns the one host_name of a server_name extension (RFC 6066 §3):
// ServerName server_name_list<1..2^16-1>, each NameType name_type and HostName<1..2^16-1>.
// Only host_name is defined, and a list may hold at most one name per type, so anything but
// exactly one host_name entry is refused. Errors never quote the raw bytes unescaped.
func parseServerName(data cryptobyte.String) (allowlist.Name, error) {
	var list cryptobyte.String
	if !data.ReadUint16LengthPrefixed(&list) || !data.Empty() {
		return "", errors.New("server_name extension is not one length-prefixed list")
	}
	if list.Empty() {
		return "", errors.New("server_name list is empty")
	}
	var host cryptobyte.String
	for !list.Empty() {
		var nameType uint8
		var name cryptobyte.String
		if !list.ReadUint8(&nameType) || !list.ReadUint16LengthPrefixed(&name) {
			return "", errors.New("truncated server_name entry")
		}
		if nameType != sniHostName {
			return "", fmt.Errorf("server_name entry of type %d, only host_name is defined", nameType)
		}
		if host != nil {
			return "", errors.New("more than one host_name")
		}
		if len(name) == 0 {
			return "", errors.New("empty host_name")
		}
		host = name
	}
	// RFC 6066 §3: HostName is ASCII without a trailing dot. allowlist.ParseName would forgive
	// the dot (DNS wire names carry one), so refuse it here, and check the length first so that
	// its error, which quotes the name escaped, stays short.
	if len(host) > sniMaxLen {
		return "", fmt.Errorf("host_name is %d bytes, longer than %d", len(host), sniMaxLen)
	}
	if host[len(host)-1] == '.' {
		return "", fmt.Errorf("host_name %q ends with a dot", string(host))
	}
	return allowlist.ParseName(string(host))
}

// parseALPN returns the protocol names of an ALPN extension (RFC 7301 §3.1):
// ProtocolNameList protocol_name_list<2..2^16-1>, each ProtocolName opaque<1..2^8-1>.
// The names share one string, so the list costs two allocations whatever its length.
func parseALPN(data cryptobyte.String) ([]string, bool) {
	var list cryptobyte.String
	if !data.ReadUint16LengthPrefixed(&list) || !data.Empty() || list.Empty() {
		return nil, false
	}
	count := 0
	for rest := list; !rest.Empty(); count++ {
		var proto cryptobyte.String
		if !rest.ReadUint8LengthPrefixed(&proto) || proto.Empty() {
			return nil, false
		}
	}
	all := string(list)
	out := make([]string, 0, count)
	for i := 0; i < len(all); {
		n := int(all[i])
		out = append(out, all[i+1:i+1+n])
		i += 1 + n
	}
	return out, true
}

// Read reads TLS records from r until one complete ClientHello handshake message has
// arrived, across any number of reads and records, and parses it. It returns every byte it
// read, even on error, so the caller can replay them upstream exactly; raw may run past the
// hello (0-RTT data in the same segment) but never past the byte budget.
//
// maxSize caps the handshake message (Hello.Size); zero or less means MaxSize. The bytes
// buffered, record headers included, are capped at four times that, which admits a typical
// hello even when it comes in 1-byte records. Memory grows only as bytes really arrive, never
// by a declared length. Deadlines are the caller's (conn.SetReadDeadline); a read error that is
// a timeout becomes ReasonTimeout, any other read error or EOF ReasonClientClosed.
//
// The first record must be a handshake record with version 0x03 0x00–0x04, and that is judged
// byte by byte, so a plaintext client that sends a short line and waits is told apart from a
// slow TLS client. Later records must be handshake records too, never zero-length (RFC 8446
// §5.1), at most 2^14 bytes.
func Read(r io.Reader, maxSize int) (raw []byte, h Hello, err error) {
	if maxSize <= 0 {
		maxSize = MaxSize
	}
	rd := recordReader{r: r, limit: 4 * maxSize}

	// The first bytes decide "is this TLS at all", one byte at a time.
	for i := 1; i <= 3; i++ {
		if err := rd.fill(i); err != nil {
			return rd.buf, h, err
		}
		if err := checkTLSStart(rd.buf[:i]); err != nil {
			return rd.buf, h, err
		}
	}

	var hs [handshakeHeaderLen]byte
	got, total := 0, -1 // handshake bytes so far; header plus body once the header is known
	pos, records := 0, 0
	for total < 0 || got < total {
		if err := rd.fill(pos + recordHeaderLen); err != nil {
			return rd.buf, h, err
		}
		hdr := rd.buf[pos : pos+recordHeaderLen]
		n := int(hdr[3])<<8 | int(hdr[4])
		switch {
		case hdr[0] != recordTypeHandshake:
			return rd.buf, h, errorf(ReasonMalformed, "record type %d before the hello was complete", hdr[0])
		case hdr[1] != 3 || hdr[2] > 4:
			return rd.buf, h, errorf(ReasonMalformed, "record version %d.%d", hdr[1], hdr[2])
		case n == 0:
			return rd.buf, h, errorf(ReasonMalformed, "zero-length handshake record")
		case n > recordMaxPlaintext:
			return rd.buf, h, errorf(ReasonTooLarge, "record of %d bytes, over %d", n, recordMaxPlaintext)
		}
		body := pos + recordHeaderLen
		for used := 0; used < n && (total < 0 || got < total); {
			// Take no more of the record than the message still needs, and learn the
			// message's length before waiting for its body.
			want := min(n-used, handshakeHeaderLen-got)
			if total >= 0 {
				want = min(n-used, total-got)
			}
			if err := rd.fill(body + used + want); err != nil {
				return rd.buf, h, err
			}
			if got < handshakeHeaderLen {
				copy(hs[got:], rd.buf[body+used:body+used+want])
			}
			got += want
			used += want
			if total < 0 && got == handshakeHeaderLen {
				if hs[0] != handshakeTypeClientHello {
					return rd.buf, h, errorf(ReasonMalformed, "handshake type %d, want client_hello", hs[0])
				}
				size := int(hs[1])<<16 | int(hs[2])<<8 | int(hs[3])
				if size > maxSize {
					return rd.buf, h, errorf(ReasonTooLarge, "hello of %d bytes, over %d", size, maxSize)
				}
				total = handshakeHeaderLen + size
			}
		}
		pos = body + n
		records++
	}

	msg := rd.buf[recordHeaderLen : recordHeaderLen+total]
	if records > 1 {
		msg = reassembleHello(rd.buf, total)
	}
	h, err = Parse(msg)
	return rd.buf, h, err
}

// checkTLSStart says whether the stream's first bytes can start a TLS handshake record:
// type 22, version 0x0300–0x0304 (RFC 8446 §5.1 legacy_record_version; 0x0300 for old stacks).
// An SSLv2-compatible hello starts with a byte with the top bit set and fails here too.
func checkTLSStart(b []byte) error {
	switch {
	case b[0] != recordTypeHandshake:
		return errorf(ReasonNotTLS, "first byte %#02x is not a handshake record", b[0])
	case len(b) > 1 && b[1] != 3:
		return errorf(ReasonNotTLS, "record major version %d", b[1])
	case len(b) > 2 && b[2] > 4:
		return errorf(ReasonNotTLS, "record minor version %d", b[2])
	}
	return nil
}

// reassembleHello concatenates the fragments of a handshake message that spans several records.
// The records were validated while reading; total bytes of fragments have arrived.
func reassembleHello(buf []byte, total int) []byte {
	msg := make([]byte, 0, total)
	for pos := 0; len(msg) < total; {
		n := int(buf[pos+3])<<8 | int(buf[pos+4])
		frag := buf[pos+recordHeaderLen:]
		msg = append(msg, frag[:min(n, total-len(msg))]...)
		pos += recordHeaderLen + n
	}
	return msg
}

// recordReader buffers what it reads from r, growing by doubling as bytes arrive, up to limit.
type recordReader struct {
	r     io.Reader
	buf   []byte
	limit int
}

// recordReaderStart is the first buffer size: one Ethernet segment's worth.
const recordReaderStart = 1536

// fill reads until at least n bytes are buffered. It may read more, never past limit.
func (rd *recordReader) fill(n int) error {
	if n > rd.limit {
		return errorf(ReasonTooLarge, "needs %d buffered bytes, over %d", n, rd.limit)
	}
	for empty := 0; len(rd.buf) < n; {
		if len(rd.buf) == cap(rd.buf) {
			grow := min(max(2*cap(rd.buf), recordReaderStart), rd.limit) - len(rd.buf)
			rd.buf = slices.Grow(rd.buf, grow)
			rd.buf = rd.buf[:len(rd.buf):min(cap(rd.buf), rd.limit)]
		}
		k, err := rd.r.Read(rd.buf[len(rd.buf):cap(rd.buf)])
		rd.buf = rd.buf[:len(rd.buf)+k]
		if len(rd.buf) >= n {
			return nil
		}
		if err != nil {
			return helloReadError(err)
		}
		if k == 0 {
			if empty++; empty >= 100 {
				return helloReadError(io.ErrNoProgress)
			}
		}
	}
	return nil
}

func helloReadError(err error) error {
	if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
		return &Error{Reason: ReasonTimeout, Err: err}
	}
	return &Error{Reason: ReasonClientClosed, Err: err}
}
