package dhcp

import (
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// sentTo records what the server writes, as a socket would send it.
type sentTo struct {
	net.PacketConn // nil: only WriteTo is used by handle
	mu             sync.Mutex
	to             []string
	msgs           []*dhcpv4.DHCPv4
}

func (c *sentTo) WriteTo(b []byte, addr net.Addr) (int, error) {
	m, err := dhcpv4.FromBytes(b)
	if err != nil {
		return 0, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.to = append(c.to, addr.String())
	c.msgs = append(c.msgs, m)
	return len(b), nil
}

// TestServerLeaseFile: a DORA through the server's handler writes the lease file before the
// ACK goes out, reports the events and leases, and a new server reads the lease back.
func TestServerLeaseFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state", "leases.json")
	now := t0
	var events []Event
	var leases []Lease
	cfg := Config{
		Settings:  *testSettings(),
		LeaseFile: path,
		Now:       func() time.Time { return now },
		OnEvent:   func(ev Event) { events = append(events, ev) },
		OnLeases:  func(ls []Lease) { leases = ls },
		Conn:      &sentTo{},
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	conn := &sentTo{}
	peer := &net.UDPAddr{IP: net.IPv4bcast, Port: ClientPort}
	s.handle(conn, peer, msg(t, dhcpv4.MessageTypeDiscover, macA, hostname("sensor-1")))
	offer := conn.msgs[0]
	s.handle(conn, peer, msg(t, dhcpv4.MessageTypeRequest, macA, sid(serverID), requested(offer.YourIPAddr.String())))
	if len(conn.msgs) != 2 || conn.msgs[1].MessageType() != dhcpv4.MessageTypeAck || conn.to[1] != "255.255.255.255:68" {
		t.Fatalf("sent %v to %v", conn.msgs, conn.to)
	}
	if len(events) != 2 || events[0].Kind != EventOffer || events[1].Kind != EventAck || events[1].Lease.Host != "sensor-1" {
		t.Fatalf("events %+v", events)
	}
	if len(leases) != 1 || leases[0].State != StateBound || leases[0].MAC != macA {
		t.Fatalf("OnLeases got %+v", leases)
	}
	onDisk, err := ReadLeases(path)
	if err != nil || len(onDisk) != 1 || onDisk[0] != leases[0] {
		t.Fatalf("lease file holds %+v (%v), want %+v", onDisk, err, leases)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o640 {
		t.Fatalf("lease file mode: %v %v", fi, err)
	}

	// A restart reads the lease: the client's INIT-REBOOT is acknowledged, not ignored.
	s2, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	conn2 := &sentTo{}
	s2.handle(conn2, peer, msg(t, dhcpv4.MessageTypeRequest, macA, requested(offer.YourIPAddr.String())))
	if len(conn2.msgs) != 1 || conn2.msgs[0].MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("after restart: sent %v", conn2.msgs)
	}

	// Expiry is recorded and written.
	now = now.Add(2 * time.Hour)
	s2.mu.Lock()
	s2.expire()
	s2.mu.Unlock()
	if last := events[len(events)-1]; last.Kind != EventExpire || last.Lease.MAC != macA {
		t.Fatalf("last event %+v, want expire", last)
	}
	if onDisk, _ := ReadLeases(path); len(onDisk) != 1 || onDisk[0].State != StateReleased {
		t.Fatalf("after expiry the file holds %+v", onDisk)
	}
}

// TestServerFileFailure: when the lease file cannot be written, no ACK goes out and the pool
// is unchanged.
func TestServerFileFailure(t *testing.T) {
	state := filepath.Join(t.TempDir(), "state")
	s, err := New(Config{Settings: *testSettings(), LeaseFile: filepath.Join(state, "leases.json"), Now: func() time.Time { return t0 }, Conn: &sentTo{}})
	if err != nil {
		t.Fatal(err)
	}
	// The state directory turns into a file (we run as root: permissions would not stop us).
	if err := os.WriteFile(state, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	conn := &sentTo{}
	s.handle(conn, &net.UDPAddr{IP: net.IPv4bcast, Port: ClientPort}, msg(t, dhcpv4.MessageTypeDiscover, macA))
	if len(conn.msgs) != 0 || len(s.Leases()) != 0 {
		t.Fatalf("sent %v and holds %v with an unwritable lease file", conn.msgs, s.Leases())
	}
}

func TestReadLeasesErrors(t *testing.T) {
	dir := t.TempDir()
	if ls, err := ReadLeases(filepath.Join(dir, "none.json")); err != nil || ls != nil {
		t.Fatalf("missing file: %v %v", ls, err)
	}
	for name, body := range map[string]string{
		"newer version": `{"version":2,"leases":[]}`,
		"torn":          `{"version":1,"leases":[{"addr":"198.18`,
		"bad mac":       `{"version":1,"leases":[{"addr":"198.18.3.100","mac":"zz","state":"bound"}]}`,
		"no address":    `{"version":1,"leases":[{"mac":"02:00:00:00:00:0a","state":"bound"}]}`,
	} {
		p := filepath.Join(dir, "l.json")
		os.WriteFile(p, []byte(body), 0o644)
		if _, err := ReadLeases(p); err == nil {
			t.Errorf("%s: read without error", name)
		}
	}
}

func TestSettingsCheck(t *testing.T) {
	for name, edit := range map[string]func(*Settings){
		"range outside subnet": func(s *Settings) { s.End = ip("198.18.4.10") },
		"range reversed":       func(s *Settings) { s.Start, s.End = s.End, s.Start },
		"host outside":         func(s *Settings) { s.Hosts[0].Addr = ip("10.0.0.1") },
		"host is the box":      func(s *Settings) { s.Hosts[0].Addr = serverID },
		"server outside":       func(s *Settings) { s.ServerID = ip("10.0.0.1") },
	} {
		s := testSettings()
		edit(s)
		if _, err := New(Config{Settings: *s, Conn: &sentTo{}}); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
