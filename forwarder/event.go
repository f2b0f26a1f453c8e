package forwarder

import (
	"log/slog"
	"net/netip"
	"time"

	"github.com/lnm-project/lnm/allowlist"
)

// EventKind is the stage of a connection an Event reports.
type EventKind string

const (
	EventOpen  EventKind = "open"  // allowed and connected upstream
	EventClose EventKind = "close" // an opened stream ended
	EventDeny  EventKind = "deny"  // closed before anything was forwarded
)

// Event is one record of a connection's life, for logs and the audit trail.
type Event struct {
	Kind   EventKind
	ID     uint64 // unique per Forwarder, shared by a stream's open and close
	Time   time.Time
	Client netip.AddrPort
	Port   uint16 // the port the device connected to
	SNI    allowlist.Name
	ALPN   []string
	ECH    bool // the hello carried an encrypted_client_hello extension; SNI is the outer name
	// Verdict is "allow" or "deny"; Reason says why (a hello error, an allow-list reason, an
	// upstream failure on deny, or how the stream ended on close).
	Verdict  string
	Reason   string
	Rule     *allowlist.Rule
	Via      Via
	Upstream netip.AddrPort
	// HelloSize is the ClientHello's handshake message length.
	HelloSize int
	// Resolve and Dial are how long finding and connecting the destination took (on open,
	// and on a deny for an upstream failure). Zero: not done.
	Resolve, Dial time.Duration
	// On close: bytes from the device, bytes to the device, and the stream's lifetime.
	BytesUp, BytesDown int64
	Duration           time.Duration
}

// emit logs the event and hands it to OnEvent, returning OnEvent's error.
func (f *Forwarder) emit(e Event) error {
	e.Time = time.Now()
	var err error
	if f.cfg.OnEvent != nil {
		err = f.cfg.OnEvent(e)
	}
	defer f.logEvent(e)
	return err
}

func (f *Forwarder) logEvent(e Event) {
	level := slog.LevelInfo
	if e.Kind == EventDeny {
		level = slog.LevelWarn
	}
	if !f.log.Enabled(f.ctx, level) {
		return
	}
	attrs := []slog.Attr{
		slog.Uint64("id", e.ID),
		slog.String("client", e.Client.String()),
		slog.Int("port", int(e.Port)),
		slog.String("verdict", e.Verdict),
		slog.String("reason", e.Reason),
	}
	if e.SNI != "" {
		attrs = append(attrs, slog.String("sni", string(e.SNI)))
	}
	if len(e.ALPN) > 0 {
		attrs = append(attrs, slog.Any("alpn", e.ALPN))
	}
	if e.ECH {
		attrs = append(attrs, slog.Bool("ech_present", true))
	}
	if e.Rule != nil {
		attrs = append(attrs, slog.String("rule", e.Rule.String()))
		if e.Rule.Origin != "" {
			attrs = append(attrs, slog.String("rule_at", e.Rule.Origin))
		}
	}
	if e.Via != "" {
		attrs = append(attrs, slog.String("via", string(e.Via)))
	}
	if e.Upstream.IsValid() {
		attrs = append(attrs, slog.String("upstream", e.Upstream.String()))
	}
	if e.Kind == EventClose {
		attrs = append(attrs, slog.Int64("bytes_up", e.BytesUp), slog.Int64("bytes_down", e.BytesDown),
			slog.Int64("duration_ms", e.Duration.Milliseconds()))
	}
	f.log.LogAttrs(f.ctx, level, "conn "+string(e.Kind), attrs...)
}
