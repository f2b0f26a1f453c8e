// Package dnswire reads and writes the one shape of DNS message that nearly every query
// has, without allocating: a standard query with one question, no answer or authority
// records, and at most an OPT record. Parse accepts only that shape and reports false for
// everything else, which the caller hands to a full DNS library; AppendReply writes the
// answers an authoritative box gives to it. It knows nothing of policy: what to answer is
// the caller's decision.
package dnswire

import (
	"encoding/binary"
	"net/netip"
)

// Record types and classes Parse and AppendReply deal in (RFC 1035, 3596, 6891).
const (
	TypeA    uint16 = 1
	TypeSOA  uint16 = 6
	TypeAAAA uint16 = 28
	TypeOPT  uint16 = 41
	ClassIN  uint16 = 1

	headerLen = 12
	// MaxNameLen is the longest name in text form, trailing dot included.
	MaxNameLen = 254
)

// Header bits (RFC 1035 §4.1.1, RFC 2535 §6.1).
const (
	bitQR = 1 << 15
	bitAA = 1 << 10
	bitTC = 1 << 9
	bitRD = 1 << 8
	bitCD = 1 << 4
)

// Query is a parsed query of the common shape. The zero value is no query; Parse fills it.
// It holds the name in its own array, so a Query may be reused for every datagram.
type Query struct {
	ID      uint16
	RD, CD  bool   // copied into the reply (RFC 1035 §4.1.1, RFC 6840 §5.9)
	QType   uint16 // any type; the caller decides what it answers
	QClass  uint16
	EDNS    bool   // the query has an OPT record (version 0, owned by the root)
	DO      bool   // its DNSSEC OK bit
	UDPSize uint16 // the OPT record's payload size; 0 without EDNS

	question []byte // the question section as sent, within the message Parse read
	name     [MaxNameLen]byte
	nameLen  int
}

// Name returns the question name in text form with its trailing dot, in the letter case
// sent ("Api.Example.com."). It aliases q: copy it to keep it.
func (q *Query) Name() []byte { return q.name[:q.nameLen] }

// Parse reads msg into q and reports whether it has the common shape: a query (QR 0) with
// opcode QUERY, TC clear, exactly one question whose name is uncompressed and made of host
// name bytes (letters, digits, '-' and '_'; not the root), no answer or authority records,
// and either no additional record or one OPT record owned by the root with EDNS version 0
// whose options are well framed and of the codes a library parses without judging their
// contents (cookie, padding). Nothing may follow. A false answer says nothing of the
// message's validity; q is then garbage.
func Parse(msg []byte, q *Query) bool {
	if len(msg) < headerLen {
		return false
	}
	flags := binary.BigEndian.Uint16(msg[2:])
	// QR 0, opcode 0, TC 0; Z and AD are ignored (a reply never copies them).
	if flags&(bitQR|0x7800|bitTC) != 0 {
		return false
	}
	if binary.BigEndian.Uint16(msg[4:]) != 1 || binary.BigEndian.Uint16(msg[6:]) != 0 ||
		binary.BigEndian.Uint16(msg[8:]) != 0 {
		return false
	}
	arcount := binary.BigEndian.Uint16(msg[10:])
	if arcount > 1 {
		return false
	}
	q.ID = binary.BigEndian.Uint16(msg)
	q.RD, q.CD = flags&bitRD != 0, flags&bitCD != 0
	off, ok := q.parseName(msg, headerLen)
	if !ok || len(msg)-off < 4 {
		return false
	}
	q.QType = binary.BigEndian.Uint16(msg[off:])
	q.QClass = binary.BigEndian.Uint16(msg[off+2:])
	off += 4
	q.question = msg[headerLen:off]
	q.EDNS, q.DO, q.UDPSize = false, false, 0
	if arcount == 0 {
		return off == len(msg)
	}
	return q.parseOPT(msg[off:])
}

// parseName reads the question name at off into q.name and returns the offset after it.
func (q *Query) parseName(msg []byte, off int) (int, bool) {
	n := 0
	for {
		if off >= len(msg) {
			return 0, false
		}
		l := int(msg[off])
		off++
		if l == 0 {
			break
		}
		if l > 63 || off+l > len(msg) || n+l+1 > MaxNameLen {
			return 0, false
		}
		for _, c := range msg[off : off+l] {
			if !hostByte(c) {
				return 0, false
			}
		}
		n += copy(q.name[n:], msg[off:off+l])
		q.name[n] = '.'
		n++
		off += l
	}
	if n == 0 {
		return 0, false // the root: rare, and answered by the library
	}
	q.nameLen = n
	return off, true
}

func hostByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_'
}

// parseOPT reads the one additional record, which must be an OPT record and the message's end.
func (q *Query) parseOPT(rr []byte) bool {
	// owner (root) 1, type 2, class (payload size) 2, TTL (ext rcode, version, flags) 4, rdlen 2
	if len(rr) < 11 || rr[0] != 0 || binary.BigEndian.Uint16(rr[1:]) != TypeOPT {
		return false
	}
	if rr[5] != 0 || rr[6] != 0 { // extended rcode and version 0
		return false
	}
	rdlen := int(binary.BigEndian.Uint16(rr[9:]))
	opts := rr[11:]
	if rdlen != len(opts) {
		return false
	}
	for len(opts) > 0 {
		if len(opts) < 4 {
			return false
		}
		code, l := binary.BigEndian.Uint16(opts), int(binary.BigEndian.Uint16(opts[2:]))
		if l > len(opts)-4 {
			return false
		}
		switch code {
		case 10: // COOKIE (RFC 7873): client cookie 8 bytes, server cookie 8 to 32
			if l != 8 && (l < 16 || l > 40) {
				return false
			}
		case 12: // PADDING (RFC 7830)
		default:
			return false
		}
		opts = opts[4+l:]
	}
	q.EDNS = true
	q.DO = rr[7]&0x80 != 0
	q.UDPSize = binary.BigEndian.Uint16(rr[3:])
	return true
}

// Reply is what the caller decided to answer. The zero value is NOERROR with no records.
type Reply struct {
	Rcode uint8 // 0 NOERROR, 3 NXDOMAIN, 5 REFUSED; no extended rcodes
	AA    bool  // authoritative
	// TC marks a bare truncated reply (the rate limit's "retry over TCP"): no records and no
	// OPT record, whatever else is set.
	TC bool
	// Addr, when valid, is the one answer record: an A record for an IPv4 address, AAAA for
	// IPv6, owned by the question name, with TTL.
	Addr netip.Addr
	// SOA adds the box's SOA in the authority section: owner the root, MNAME "lnm.", RNAME
	// "hostmaster.lnm.", serial 1, refresh 3600, retry 600, expire 86400, minimum TTL; its
	// TTL is TTL too (RFC 2308).
	SOA bool
	TTL uint32
	// EDNSSize is the payload size the reply's OPT record advertises when the query had
	// one. Zero: 1232.
	EDNSSize uint16
}

// AppendReply appends the reply to q (the question as sent, its ID, RD and CD) to dst and
// returns it. Names are written in full, not compressed, as miekg/dns packs a UDP reply that
// fits the client's size: ReplyLen says how long the reply is before writing it.
func AppendReply(dst []byte, q *Query, r *Reply) []byte {
	flags := uint16(bitQR) | uint16(r.Rcode&0x0f)
	if q.RD {
		flags |= bitRD
	}
	if q.CD {
		flags |= bitCD
	}
	if r.AA {
		flags |= bitAA
	}
	var an, ns, ar uint16
	if r.TC {
		flags |= bitTC
	} else {
		if r.Addr.IsValid() {
			an = 1
		}
		if r.SOA {
			ns = 1
		}
		if q.EDNS {
			ar = 1
		}
	}
	dst = binary.BigEndian.AppendUint16(dst, q.ID)
	dst = binary.BigEndian.AppendUint16(dst, flags)
	dst = binary.BigEndian.AppendUint16(dst, 1)
	dst = binary.BigEndian.AppendUint16(dst, an)
	dst = binary.BigEndian.AppendUint16(dst, ns)
	dst = binary.BigEndian.AppendUint16(dst, ar)
	dst = append(dst, q.question...)
	if an == 1 {
		dst = append(dst, q.question[:len(q.question)-4]...) // the question's name
		if r.Addr.Is4() {
			a := r.Addr.As4()
			dst = appendRRHeader(dst, TypeA, r.TTL, 4)
			dst = append(dst, a[:]...)
		} else {
			a := r.Addr.As16()
			dst = appendRRHeader(dst, TypeAAAA, r.TTL, 16)
			dst = append(dst, a[:]...)
		}
	}
	if ns == 1 {
		dst = append(dst, 0) // owner: the root
		start := len(dst)
		dst = appendRRHeader(dst, TypeSOA, r.TTL, 0)
		mname := len(dst)
		dst = append(dst, 3, 'l', 'n', 'm', 0)
		dst = append(dst, 10, 'h', 'o', 's', 't', 'm', 'a', 's', 't', 'e', 'r', 3, 'l', 'n', 'm', 0)
		dst = binary.BigEndian.AppendUint32(dst, 1)
		dst = binary.BigEndian.AppendUint32(dst, 3600)
		dst = binary.BigEndian.AppendUint32(dst, 600)
		dst = binary.BigEndian.AppendUint32(dst, 86400)
		dst = binary.BigEndian.AppendUint32(dst, r.TTL)
		binary.BigEndian.PutUint16(dst[start+8:], uint16(len(dst)-mname))
	}
	if ar == 1 {
		size := r.EDNSSize
		if size == 0 {
			size = 1232
		}
		dst = append(dst, 0)
		dst = binary.BigEndian.AppendUint16(dst, TypeOPT)
		dst = binary.BigEndian.AppendUint16(dst, size)
		var do byte
		if q.DO {
			do = 0x80
		}
		dst = append(dst, 0, 0, do, 0, 0, 0)
	}
	return dst
}

// ReplyLen is the length of the reply AppendReply writes for q and r.
func ReplyLen(q *Query, r *Reply) int {
	n := headerLen + len(q.question)
	if r.TC {
		return n
	}
	if r.Addr.IsValid() {
		n += len(q.question) - 4 + 10 + 4
		if !r.Addr.Is4() {
			n += 12
		}
	}
	if r.SOA {
		n += soaLen
	}
	if q.EDNS {
		n += optLen
	}
	return n
}

// The lengths of the SOA record (owner, header, MNAME, RNAME, five numbers) and of the OPT
// record AppendReply writes.
const (
	soaLen = 1 + 10 + 5 + 16 + 20
	optLen = 11
)

func appendRRHeader(dst []byte, typ uint16, ttl uint32, rdlen uint16) []byte {
	dst = binary.BigEndian.AppendUint16(dst, typ)
	dst = binary.BigEndian.AppendUint16(dst, ClassIN)
	dst = binary.BigEndian.AppendUint32(dst, ttl)
	return binary.BigEndian.AppendUint16(dst, rdlen)
}
