package forwarder

import (
	"io"
	"net"

	"github.com/lnm-project/lnm/clienthello"
	"github.com/lnm-project/lnm/levelid"
)

// Level identity (Config.Identity, package levelid): a child box's header is read before the
// ClientHello and becomes the connection's Origin; a box with a parent sends its own header
// first on every stream it forwards there.

// identify reads the start of a connection as Config.Identity says. It returns the reader
// the ClientHello is read from, or a *clienthello.Error with the reason the connection is refused.
// Off: c itself. A header refused for its path (a loop, the hop limit) is kept as Origin.
func (f *Forwarder) identify(c net.Conn, cfg *Config, ev *Event) (io.Reader, error) {
	if cfg.Identity == nil {
		return c, nil
	}
	in, h, err := cfg.Identity.Stream(c, ev.Client.Addr())
	ev.Origin = h
	if reason := levelid.ReasonOf(err); reason != "" {
		if reason == levelid.ReasonLoop || reason == levelid.ReasonHopLimit {
			// A loop of parents or a path too long is a fault of the plant's configuration,
			// not a device's: say so where the operator looks first.
			f.log.Warn("level identity: connection refused", "id", ev.ID, "client", ev.Client.String(), "reason", string(reason), "err", err)
		}
		return nil, &clienthello.Error{Reason: reason, Err: err}
	}
	return in, nil
}

// announce returns the header to write first on a stream that goes to the parent; nil when
// level identity is off or the stream goes elsewhere.
func (f *Forwarder) announce(cfg *Config, client net.Conn, ev *Event, d Decision) []byte {
	if cfg.Identity == nil || d.Via != ViaParent {
		return nil
	}
	local, _ := client.LocalAddr().(*net.TCPAddr)
	b, err := cfg.Identity.Announce(&ev.Origin, ev.Client, local.AddrPort(), ev.ID)
	if err != nil { // only a host name that cannot travel: forward without
		f.log.Warn("level identity: no header for the parent", "id", ev.ID, "err", err)
	}
	return b
}
