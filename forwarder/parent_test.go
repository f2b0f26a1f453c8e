package forwarder_test

import (
	"context"
	"crypto/tls"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/lnm-project/lnm/forwarder"
	"github.com/lnm-project/lnm/internal/testkit"
)

// The faults catalog's case 22, as the child box records it: a parent that denies shows up
// as an upstream close of a stream the child opened (the device gets the parent's alert); a
// parent that does not answer in time fails the stream fast with upstream_parent_unreachable.
func TestParentDeniesOrIsSlow(t *testing.T) {
	ca := testkit.NewCA(t)
	t.Run("parent denies", func(t *testing.T) {
		be := testkit.TLSEcho(t, "127.0.0.1:0", ca.Issue(t, "a.example.test"))
		// The parent: a forwarder on 127.0.0.1 whose list does not hold the name.
		parent := start(t, forwarder.Config{List: rules(t, "other.example.test"), Parent: netip.MustParseAddr("127.0.0.1")}, be.Port())
		child := start(t, forwarder.Config{List: rules(t, "a.example.test"), Parent: netip.MustParseAddr("127.0.0.1")}, parent.port)
		_, err := talk(t, child.addr(), "a.example.test", ca, "x")
		if err == nil || !strings.Contains(err.Error(), "access denied") {
			t.Fatalf("device: %v, want the parent's access_denied alert", err)
		}
		if ev := parent.events.next(t, forwarder.EventDeny); ev.SNI != "a.example.test" {
			t.Errorf("parent's deny %+v", ev)
		}
		open := child.events.next(t, forwarder.EventOpen)
		closed := child.events.next(t, forwarder.EventClose)
		if open.Via != forwarder.ViaParent || closed.ID != open.ID || closed.Reason != forwarder.ReasonEOF || closed.BytesDown == 0 {
			t.Errorf("child: open %+v, close %+v; want an opened stream the parent closed, its alert counted down", open, closed)
		}
	})
	t.Run("parent slow", func(t *testing.T) {
		const dialTimeout = 300 * time.Millisecond
		child := start(t, forwarder.Config{
			List: rules(t, "a.example.test"), Parent: netip.MustParseAddr("127.0.0.1"), DialTimeout: dialTimeout,
			Dial: func(ctx context.Context, network, address string) (net.Conn, error) {
				<-ctx.Done() // a parent whose SYN-ACK never comes
				return nil, ctx.Err()
			},
		}, 9)
		began := time.Now()
		c, err := tls.Dial("tcp", child.addr(), ca.Client("a.example.test"))
		if err == nil {
			c.Close()
			t.Fatal("the handshake went through with the parent silent")
		}
		ev := child.events.next(t, forwarder.EventDeny)
		if took := time.Since(began); ev.Reason != forwarder.ReasonParentFailed || took > dialTimeout+2*time.Second {
			t.Errorf("deny %s after %v, want %s within the dial timeout (%v)", ev.Reason, took, forwarder.ReasonParentFailed, dialTimeout)
		}
	})
}
