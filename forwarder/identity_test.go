package forwarder_test

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/lnm-project/lnm/forwarder"
	"github.com/lnm-project/lnm/levelid"
)

// fromAddr dials from a fixed loopback address, so a parent on 127.0.0.1 can tell its child
// (127.0.0.2) from a device (127.0.0.1).
func fromAddr(local string) func(ctx context.Context, network, address string) (net.Conn, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
	return d.DialContext
}

// TestLevelIdentity: device → l3 → l4 → a plain backend standing for level 5. l4 records the
// device behind l3; the backend reads l4's header naming the device and both boxes, then the
// device's bytes exactly; each box counts only the device's bytes.
func TestLevelIdentity(t *testing.T) {
	port, got := plainBackend(t)
	children := []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")}
	l4 := start(t, forwarder.Config{
		List: rules(t, "opc.plant.test"), Parent: netip.MustParseAddr("127.0.0.1"),
		Identity: &levelid.Box{Name: "l4", Level: 4, Children: children},
	}, port)
	l3 := start(t, forwarder.Config{
		List: rules(t, "opc.plant.test"), Parent: netip.MustParseAddr("127.0.0.1"),
		Identity: &levelid.Box{Name: "l3", Level: 3}, Dial: fromAddr("127.0.0.2"),
	}, l4.port)

	payload := append(rawHello(t, "opc.plant.test"), "after the hello"...)
	c, err := net.Dial("tcp", l3.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	device := netip.MustParseAddrPort(c.LocalAddr().String())
	if _, err := c.Write(payload); err != nil {
		t.Fatal(err)
	}
	open3 := l3.events.next(t, forwarder.EventOpen)
	open4 := l4.events.next(t, forwarder.EventOpen)
	c.(*net.TCPConn).CloseWrite()
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	io.ReadAll(c)

	if open3.Origin.Hops != 0 {
		t.Errorf("l3 recorded an origin for a device's own connection: %+v", open3.Origin)
	}
	o := open4.Origin
	if o.Device != device || o.Hops != 1 || o.ID != open3.ID || o.Box != "l3" || o.Level != 3 || !slices.Equal(o.Path, []string{"l3"}) {
		t.Errorf("l4's origin %+v, want device %s via l3 (its id %d)", o, device, open3.ID)
	}
	var b []byte
	select {
	case b = <-got:
	case <-time.After(20 * time.Second):
		t.Fatal("the backend never finished reading")
	}
	raw, err := levelid.Read(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("the backend got no header from l4: %v", err)
	}
	h, err := levelid.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	if h.Device != device || h.Hops != 2 || h.ID != open4.ID || h.Box != "l4" || !slices.Equal(h.Path, []string{"l3", "l4"}) {
		t.Errorf("l4 sent %+v", h)
	}
	if rest := b[len(raw):]; !bytes.Equal(rest, payload) {
		t.Errorf("after the header the backend got %d bytes, not the device's %d", len(rest), len(payload))
	}
	for name, s := range map[string]*setup{"l3": l3, "l4": l4} {
		if ev := s.events.next(t, forwarder.EventClose); ev.BytesUp != int64(len(payload)) {
			t.Errorf("%s counted %d bytes up, want the device's %d", name, ev.BytesUp, len(payload))
		}
	}
}

// TestLevelIdentityRefusals: what a box with level identity on refuses, and why.
func TestLevelIdentityRefusals(t *testing.T) {
	box := func(children string) *setup {
		return start(t, forwarder.Config{
			List:     rules(t, "opc.plant.test"),
			Identity: &levelid.Box{Name: "l4", Level: 4, Children: []netip.Prefix{netip.MustParsePrefix(children)}},
		}, 9)
	}
	header := func(path ...string) []byte {
		h := levelid.Header{
			Device: netip.MustParseAddrPort("198.18.2.10:5000"), Dest: netip.MustParseAddrPort("198.18.2.1:443"),
			Hops: len(path), ID: 1, Box: path[len(path)-1], Level: 3, Path: path,
		}
		b, err := levelid.Marshal(&h)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	hello := rawHello(t, "opc.plant.test")
	cases := []struct {
		name     string
		children string // the device dials from 127.0.0.1
		send     []byte
		reason   string
	}{
		{"device sends a PROXY header", "127.0.0.2/32", append(header("l3"), hello...), string(levelid.ReasonRefused)},
		{"device sends PROXY v1", "127.0.0.2/32", []byte("PROXY TCP4 198.18.2.99 198.18.2.1 1 443\r\n"), string(levelid.ReasonRefused)},
		{"child sends garbage", "127.0.0.1/32", append(header("l3")[:20], bytes.Repeat([]byte{0}, 100)...), string(levelid.ReasonBadHeader)},
		{"loop", "127.0.0.1/32", append(header("l4", "l3"), hello...), string(levelid.ReasonLoop)},
		{"hop limit", "127.0.0.1/32", append(header("a", "b", "c", "d", "e", "f", "g", "h"), hello...), string(levelid.ReasonHopLimit)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := box(c.children)
			conn, err := net.Dial("tcp", s.addr())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.Write(c.send)
			ev := s.events.next(t, forwarder.EventDeny)
			if string(ev.Reason) != c.reason {
				t.Errorf("deny %s, want %s", ev.Reason, c.reason)
			}
			if c.reason == string(levelid.ReasonLoop) && !slices.Equal(ev.Origin.Path, []string{"l4", "l3"}) {
				t.Errorf("the loop's deny carries origin %+v, want the path that came back", ev.Origin)
			}
			conn.SetReadDeadline(time.Now().Add(20 * time.Second))
			io.ReadAll(conn) // closed by the box
		})
	}
}
