package resolver

import (
	"errors"
	"net"
	"net/netip"
	"time"

	"github.com/lnm-project/lnm/internal/udpsock"
	"github.com/miekg/dns"
	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

// The UDP side does not go through miekg/dns's server: each socket has a read loop that takes
// datagrams in batches (recvmmsg), answers the common ones on the fast path, hands every
// other one to ServeDNS on a goroutine of its own (as miekg/dns would), lets Config.Flush put
// the batch's audit records in the kernel, and only then sends the batch's answers
// (sendmmsg). Config.UDPSockets sockets share the port with SO_REUSEPORT, so the kernel
// spreads clients over as many loops.

const (
	udpBatch   = 32   // datagrams a loop takes per read
	udpReadMax = 4096 // the largest datagram a loop reads whole; longer ones are dropped
	udpReplMax = 512  // room for a fast-path reply (they are under 512 bytes)
)

// batchConn is the batched I/O of ipv4.PacketConn (the same calls serve an IPv6 socket:
// they are recvmmsg and sendmmsg on the socket, whatever its family).
type batchConn interface {
	ReadBatch(ms []ipv4.Message, flags int) (int, error)
	WriteBatch(ms []ipv4.Message, flags int) (int, error)
}

// serveUDP is one socket's read loop; it returns when the socket is closed.
func (s *Server) serveUDP(c *udpsock.Conn) {
	defer s.served.Done()
	var bc batchConn = ipv4.NewPacketConn(c.UDPConn)
	in := make([]ipv4.Message, udpBatch)
	out := make([]ipv4.Message, udpBatch)
	for i := range in {
		in[i].Buffers = [][]byte{make([]byte, udpReadMax)}
		in[i].OOB = make([]byte, udpsock.OOBSize)
		out[i].Buffers = [][]byte{make([]byte, 0, udpReplMax)}
	}
	var (
		st      fastState
		oobAddr netip.Addr
		oob     []byte
	)
	for {
		n, err := bc.ReadBatch(in, 0)
		s.reads.Add(uint64(max(n, 1)))
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			s.log.Debug("udp read", "err", err)
			time.Sleep(time.Millisecond) // a persistent error must not spin
			continue
		}
		k := 0
		for i := range in[:n] {
			m := &in[i]
			if m.Flags&unix.MSG_TRUNC != 0 {
				continue
			}
			ua, ok := m.Addr.(*net.UDPAddr)
			if !ok {
				continue
			}
			local := udpsock.Destination(m.OOB[:m.NN])
			client := unmapPort(ua.AddrPort())
			data := m.Buffers[0][:m.N]
			reply, handled := s.fastAnswer(&st, data, client, local, out[k].Buffers[0][:0])
			if !handled {
				s.served.Add(1)
				go s.serveSlow(c, append([]byte(nil), data...), &udpsock.Peer{Remote: ua, Local: local})
				continue
			}
			if reply == nil {
				continue
			}
			if local != oobAddr || oob == nil {
				oobAddr, oob = local, udpsock.SourceOOB(local)
			}
			out[k].Buffers[0], out[k].Addr, out[k].OOB = reply, m.Addr, oob
			k++
		}
		if k == 0 {
			continue
		}
		if err := s.flush(); err != nil {
			continue // what was not recorded is not answered; the client asks again
		}
		for sent := 0; sent < k; {
			w, err := bc.WriteBatch(out[sent:k], 0)
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				s.log.Debug("udp write", "client", out[sent].Addr, "err", err)
				w = max(w, 1) // skip the datagram that failed
			}
			sent += w
		}
	}
}

// flush runs Config.Flush: the audit records of the answers about to be sent reach the
// kernel first. A failure is logged at most once a second.
func (s *Server) flush() error {
	if s.cfg.Flush == nil {
		return nil
	}
	err := s.cfg.Flush()
	if err != nil {
		now := time.Now().UnixNano()
		if last := s.flushLogged.Load(); now-last > int64(time.Second) && s.flushLogged.CompareAndSwap(last, now) {
			s.log.Warn("answers withheld: their audit records could not be written", "err", err)
		}
	}
	return err
}

// serveSlow answers one datagram the way miekg/dns's server does: silence for what has no
// header or is a response, FORMERR for what does not unpack, ServeDNS for the rest.
func (s *Server) serveSlow(c *udpsock.Conn, data []byte, p *udpsock.Peer) {
	defer s.served.Done()
	w := &udpWriter{c: c, peer: p}
	if len(data) < dnsHeaderLen {
		return
	}
	req := new(dns.Msg)
	if err := req.Unpack(data); err != nil {
		if acceptMsg(dns.Header{Bits: uint16(data[2])<<8 | uint16(data[3])}) != dns.MsgAccept {
			return
		}
		req.SetRcodeFormatError(req)
		req.Zero = false
		req.Ns, req.Answer, req.Extra = nil, nil, nil
		w.WriteMsg(req)
		return
	}
	if req.Response {
		return
	}
	s.ServeDNS(w, req)
}

// udpWriter is the dns.ResponseWriter of a datagram the slow path answers.
type udpWriter struct {
	c    *udpsock.Conn
	peer *udpsock.Peer
}

func (w *udpWriter) LocalAddr() net.Addr  { return w.c.LocalAddr() }
func (w *udpWriter) RemoteAddr() net.Addr { return w.peer }
func (w *udpWriter) WriteMsg(m *dns.Msg) error {
	b, err := m.Pack()
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

func (w *udpWriter) Write(b []byte) (int, error) {
	ownBits(b)
	return w.c.WriteTo(b, w.peer)
}
func (w *udpWriter) Close() error        { return nil }
func (w *udpWriter) TsigStatus() error   { return nil }
func (w *udpWriter) TsigTimersOnly(bool) {}
func (w *udpWriter) Hijack()             {}

// queuedAny reports whether a datagram waits in any of the sockets.
func queuedAny(conns []*udpsock.Conn) bool {
	for _, c := range conns {
		if queued(c.UDPConn) {
			return true
		}
	}
	return false
}
