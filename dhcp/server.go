package dhcp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/server4"
)

// DefaultLeaseTime is the lease granted when the config names none.
const DefaultLeaseTime = 12 * time.Hour

// expireEvery is how often the server looks for leases that ran out.
const expireEvery = 10 * time.Second

// Config configures a Server.
type Config struct {
	// Interface is the device-side interface the server binds to (SO_BINDTODEVICE): it
	// answers there and nowhere else. Required unless Conn is set.
	Interface string
	// Settings is the network served. A zero ServerID is the interface's first IPv4
	// address; a zero Subnet is that address's prefix on the interface.
	Settings Settings
	// LeaseFile is where leases are kept across restarts. Empty: in memory only.
	LeaseFile string
	// Logger receives what the server does; nil: discard.
	Logger *slog.Logger
	// OnEvent is called for every lease event, in order, after the change is durable.
	// nil: none.
	OnEvent func(Event)
	// OnLeases is called with every lease after each change of the pool (and once at
	// Start). nil: none.
	OnLeases func([]Lease)
	// Now is the clock; nil: time.Now.
	Now func() time.Time
	// Conn is the socket to serve on; nil: UDP port 67 bound to Interface. Tests set it.
	Conn net.PacketConn
}

// Server is the DHCPv4 server: socket I/O, the pool, its file, and expiry around Decide.
type Server struct {
	cfg  Config
	set  Settings
	log  *slog.Logger
	now  func() time.Time
	conn net.PacketConn

	mu     sync.Mutex // serializes decisions: server4 runs one goroutine per packet
	pool   *Pool
	closed bool // set by Close under mu: a packet still in flight is dropped
	wg     sync.WaitGroup

	ctx       context.Context // good until Close
	cancel    context.CancelFunc
	closeOnce sync.Once
}

// New checks cfg, completes its settings from the interface, and reads the lease file. It
// binds nothing.
func New(cfg Config) (*Server, error) {
	s := &Server{cfg: cfg, set: cfg.Settings, log: cfg.Logger, now: cfg.Now}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.log = s.log.With("pkg", "dhcp", "interface", cfg.Interface)
	if s.now == nil {
		s.now = time.Now
	}
	if cfg.Conn == nil && cfg.Interface == "" {
		return nil, errors.New("dhcp: no interface to serve on")
	}
	if cfg.Interface != "" && (!s.set.ServerID.IsValid() || !s.set.Subnet.IsValid()) {
		if err := s.fromInterface(); err != nil {
			return nil, err
		}
	}
	if s.set.LeaseTime <= 0 {
		s.set.LeaseTime = DefaultLeaseTime
	}
	if err := s.set.check(); err != nil {
		return nil, err
	}
	var leases []Lease
	if cfg.LeaseFile != "" {
		var err error
		if leases, err = ReadLeases(cfg.LeaseFile); err != nil {
			return nil, err
		}
	}
	s.pool = NewPool(leases)
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s, nil
}

// fromInterface fills ServerID and Subnet from the interface's IPv4 addresses: the
// configured ServerID must be one of them.
func (s *Server) fromInterface() error {
	ifi, err := net.InterfaceByName(s.cfg.Interface)
	if err != nil {
		return fmt.Errorf("dhcp: interface %s: %w", s.cfg.Interface, err)
	}
	addrs, err := ifi.Addrs()
	if err != nil {
		return fmt.Errorf("dhcp: interface %s: %w", s.cfg.Interface, err)
	}
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		ip, ok := netip.AddrFromSlice(ipn.IP.To4())
		if !ok {
			continue
		}
		ones, _ := ipn.Mask.Size()
		if s.set.ServerID.IsValid() && s.set.ServerID != ip {
			continue
		}
		s.set.ServerID = ip
		if !s.set.Subnet.IsValid() {
			s.set.Subnet = netip.PrefixFrom(ip, ones).Masked()
		}
		return nil
	}
	if s.set.ServerID.IsValid() {
		return fmt.Errorf("dhcp: interface %s does not have the address %s (listen): the devices' DNS server must be the box's address on their network", s.cfg.Interface, s.set.ServerID)
	}
	return fmt.Errorf("dhcp: interface %s has no IPv4 address", s.cfg.Interface)
}

// check refuses settings under which Decide could hand out what it must not.
func (set *Settings) check() error {
	switch {
	case !set.ServerID.Is4() || !set.Subnet.Addr().Is4():
		return fmt.Errorf("dhcp: the server address %s and subnet %s must be IPv4", set.ServerID, set.Subnet)
	case !set.Subnet.Contains(set.ServerID):
		return fmt.Errorf("dhcp: the server address %s is not in the subnet %s", set.ServerID, set.Subnet)
	case !set.Subnet.Contains(set.Start) || !set.Subnet.Contains(set.End):
		return fmt.Errorf("dhcp: range %s %s is not inside the subnet %s", set.Start, set.End, set.Subnet)
	case set.Start.Compare(set.End) > 0:
		return fmt.Errorf("dhcp: range %s %s ends before it starts", set.Start, set.End)
	}
	for _, h := range set.Hosts {
		if !set.Subnet.Contains(h.Addr) {
			return fmt.Errorf("dhcp: host %s: %s is not inside the subnet %s", h.Name, h.Addr, set.Subnet)
		}
		if h.Addr == set.ServerID {
			return fmt.Errorf("dhcp: host %s: %s is the box's own address", h.Name, h.Addr)
		}
	}
	return nil
}

// Settings returns the settings in force, completed from the interface.
func (s *Server) Settings() Settings { return s.set }

// Start binds the socket and serves until Close, expiring leases on a ticker.
func (s *Server) Start() error {
	conn := s.cfg.Conn
	if conn == nil {
		c, err := server4.NewIPv4UDPConn(s.cfg.Interface, &net.UDPAddr{Port: ServerPort})
		if err != nil {
			return fmt.Errorf("dhcp: listen on %s port %d: %w", s.cfg.Interface, ServerPort, err)
		}
		conn = c
	}
	s.conn = conn
	srv, err := server4.NewServer(s.cfg.Interface, nil, s.handle, server4.WithConn(conn))
	if err != nil {
		conn.Close()
		return fmt.Errorf("dhcp: %w", err)
	}
	s.mu.Lock()
	s.expire()
	if s.cfg.OnLeases != nil {
		s.cfg.OnLeases(s.pool.Leases())
	}
	s.mu.Unlock()
	s.log.Info("DHCP server listening", "server_id", s.set.ServerID, "subnet", s.set.Subnet,
		"range", s.set.Start.String()+"-"+s.set.End.String(), "leases", len(s.pool.byAddr))
	s.wg.Add(2)
	go s.expireLoop()
	go func() {
		defer s.wg.Done()
		// Serve returns when Close closes the socket.
		if err := srv.Serve(); err != nil && s.ctx.Err() == nil {
			s.log.Error("DHCP server stopped", "err", err)
		}
	}()
	return nil
}

func (s *Server) expireLoop() {
	defer s.wg.Done()
	tick := time.NewTicker(expireEvery)
	defer tick.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-tick.C:
			s.mu.Lock()
			if !s.closed {
				s.expire()
			}
			s.mu.Unlock()
		}
	}
}

// handle is server4's handler for one parsed packet. server4 runs it on a goroutine of its
// own, so decisions are serialized here.
func (s *Server) handle(conn net.PacketConn, peer net.Addr, req *dhcpv4.DHCPv4) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	now := s.now()
	d := Decide(req, s.pool, &s.set, now)
	if !s.commit(d.Changes) {
		return // not durable: promise nothing
	}
	if d.Event != nil {
		s.emit(*d.Event)
	}
	if d.Reply == nil {
		s.log.Debug("DHCP request not answered", "type", req.MessageType().String(), "mac", MAC(padMAC(req.ClientHWAddr)).String(), "reason", string(d.Reason), "peer", peer.String())
		return
	}
	to := &net.UDPAddr{IP: d.To.Addr().AsSlice(), Port: int(d.To.Port())}
	if _, err := conn.WriteTo(d.Reply.ToBytes(), to); err != nil {
		s.log.Warn("DHCP reply not sent", "to", to.String(), "err", err)
	}
}

func padMAC(hw net.HardwareAddr) []byte {
	var m [6]byte
	copy(m[:], hw)
	return m[:]
}

// commit applies changes to the pool after writing the result to the lease file. When the
// file cannot be written, the pool stays as it was and commit returns false.
func (s *Server) commit(changes []Change) bool {
	if len(changes) == 0 {
		return true
	}
	next := &Pool{byAddr: maps.Clone(s.pool.byAddr), byMAC: maps.Clone(s.pool.byMAC)}
	next.Apply(changes)
	if s.cfg.LeaseFile != "" {
		if err := WriteLeases(s.cfg.LeaseFile, next.Leases()); err != nil {
			s.log.Error("lease file not written: no reply sent", "err", err)
			return false
		}
	}
	s.pool = next
	if s.cfg.OnLeases != nil {
		s.cfg.OnLeases(next.Leases())
	}
	return true
}

func (s *Server) emit(ev Event) {
	s.log.Info("DHCP "+string(ev.Kind), "mac", ev.Lease.MAC.String(), "addr", ev.Lease.Addr, "host", ev.Lease.Host, "reason", string(ev.Reason))
	if s.cfg.OnEvent != nil {
		s.cfg.OnEvent(ev)
	}
}

// expire runs Expire on the pool. Call it with mu held.
func (s *Server) expire() {
	now := s.now()
	changes, events := Expire(s.pool, now)
	if !s.commit(changes) {
		return
	}
	for _, ev := range events {
		ev.Time = now
		s.emit(ev)
	}
}

// Leases returns every lease held, by address.
func (s *Server) Leases() []Lease {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pool.Leases()
}

// Close stops serving and waits for the serving goroutine. It is idempotent.
func (s *Server) Close() error {
	var err error
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		s.cancel()
		if s.conn != nil {
			err = s.conn.Close()
		}
		s.wg.Wait()
	})
	return err
}
