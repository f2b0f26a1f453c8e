package forwarder

import (
	"bytes"
	"io"
	"net"
	"net/netip"

	"github.com/lnm-project/lnm/levelid"
)

// Level identity (Config.Identity, package levelid): a child box's header is read before the
// ClientHello and becomes the connection's Origin; a box with a parent sends its own header
// first on every stream it forwards there.

// identify reads the start of a connection as Config.Identity says. It returns the reader
// the ClientHello is read from (the bytes identify read and did not keep come first), or a
// *HelloError with the reason the connection is refused. Off: c itself.
func (f *Forwarder) identify(c net.Conn, cfg *Config, ev *Event) (io.Reader, error) {
	if cfg.Identity == nil {
		return c, nil
	}
	h, pending, err := cfg.Identity.Accept(c, ev.Client.Addr())
	ev.Origin = h // a header refused for its path (loop, hop limit) is recorded with it
	if err != nil {
		reason := levelid.ReasonOf(err)
		if reason == levelid.ReasonLoop || reason == levelid.ReasonHopLimit {
			// A loop of parents or a path too long is a configuration fault of the plant,
			// not a device's: say so where the operator looks first.
			f.log.Warn("level identity: connection refused", "id", ev.ID, "client", ev.Client.String(), "reason", string(reason), "err", err)
		}
		return nil, &HelloError{Reason: reason, Err: err}
	}
	if len(pending) == 0 {
		return c, nil
	}
	return io.MultiReader(bytes.NewReader(pending), c), nil
}

// announce returns the header to write first on a stream that goes to the parent; nil when
// level identity is off or the stream goes elsewhere.
func (f *Forwarder) announce(cfg *Config, client net.Conn, ev *Event, d Decision) []byte {
	if cfg.Identity == nil || d.Via != ViaParent {
		return nil
	}
	var local netip.AddrPort
	if a, ok := client.LocalAddr().(*net.TCPAddr); ok {
		local = a.AddrPort()
	}
	h := cfg.Identity.Next(&ev.Origin, ev.Client, local, ev.ID)
	b, err := levelid.Marshal(&h)
	if err != nil {
		// Only a box name the config check let through could do this: forward without.
		f.log.Warn("level identity: no header for the parent", "id", ev.ID, "err", err)
		return nil
	}
	return b
}
