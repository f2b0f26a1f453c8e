package forwarder

import (
	"log/slog"
	"net/netip"
	"time"

	"github.com/lnm-project/lnm/allowlist"
	"github.com/lnm-project/lnm/clienthello"
	"github.com/lnm-project/lnm/httpfront"
	"github.com/lnm-project/lnm/levelid"
)

// EventKind is the stage of a connection an Event reports.
type EventKind string

const (
	EventOpen  EventKind = "open"  // allowed and connected upstream
	EventClose EventKind = "close" // an opened stream ended
	EventDeny  EventKind = "deny"  // closed before anything was forwarded
)

// Verdict is what the forwarder did with a connection.
type Verdict uint8

const (
	VerdictDeny      Verdict = iota // closed before anything was forwarded; the zero Event denies
	VerdictAllow                    // spliced to its destination
	VerdictWouldDeny                // learn mode: spliced, though the list denies it
)

func (v Verdict) String() string {
	switch v {
	case VerdictAllow:
		return "allow"
	case VerdictWouldDeny:
		return "would-deny"
	}
	return "deny"
}

// Verdicts lists every verdict, for documentation tests.
func Verdicts() []Verdict { return []Verdict{VerdictDeny, VerdictAllow, VerdictWouldDeny} }

// Reasons the forwarder adds to the allow list's own (see allowlist.Reasons): why a connection
// was denied, how an allowed one got through, and how a stream ended. Each is the word written
// to the audit log and the metrics. A client outside Config.Sources is denied with
// allowlist.ReasonSourceNotAllowed, the resolver's word too.
const (
	// Why the ClientHello was rejected (clienthello.Error.Reason): see that package.
	ReasonNotTLS         = clienthello.ReasonNotTLS
	ReasonHelloTooLarge  = clienthello.ReasonTooLarge
	ReasonHelloTimeout   = clienthello.ReasonTimeout
	ReasonMalformedHello = clienthello.ReasonMalformed
	ReasonNoSNI          = clienthello.ReasonNoSNI
	ReasonBadSNI         = clienthello.ReasonBadSNI
	// ReasonClientClosed: the stream ended or failed before a full hello arrived, or
	// before the upstream answered.
	ReasonClientClosed = clienthello.ReasonClientClosed

	// Why a connection was denied before its hello was read.

	// ReasonTooManyPending: a cap on connections still waiting for their hello was reached,
	// the source's (Config.MaxPendingPerSrc), or the box's while no other source held more.
	ReasonTooManyPending allowlist.Reason = "too_many_pending"
	// ReasonTooManyConns: the source (Config.MaxConnsPerSrc) or everyone together
	// (Config.MaxConns) held as many open connections as allowed.
	ReasonTooManyConns allowlist.Reason = "too_many_conns"
	// ReasonConnRateLimited: the source opened new connections faster than Config.ConnRate.
	ReasonConnRateLimited allowlist.Reason = "conn_rate_limited"
	// ReasonHelloEvicted: the connection was still waiting for its hello when the pending
	// table was full, its source held the most waiting connections, and it was the oldest
	// of them: it was closed to make room for a newcomer.
	ReasonHelloEvicted allowlist.Reason = "hello_evicted"

	// Why an allowed stream could not be connected (a deny), or its upstream failed while
	// the hello was replayed (a close).

	ReasonResolveFailed  allowlist.Reason = "resolve_failed"              // the name or a `to` host did not resolve
	ReasonPrivateTarget  allowlist.Reason = "private_target"              // it resolves only to addresses the box refuses to dial
	ReasonUpstreamFailed allowlist.Reason = "upstream_unreachable"        // no resolved address or `to` destination answered
	ReasonParentFailed   allowlist.Reason = "upstream_parent_unreachable" // the parent box did not answer
	// ReasonNoDescriptors: the box itself ran out of file descriptors (its open-file limit,
	// LimitNOFILE, or the system's) and could not open the upstream socket: not the
	// upstream's fault.
	ReasonNoDescriptors allowlist.Reason = "out_of_descriptors"

	// How an allowed stream got through, on its open and close records.

	// ReasonRoute: a static `tcp` route, which has no hello and no rule.
	ReasonRoute allowlist.Reason = "route"

	// How an opened stream ended (its close record).

	ReasonEOF              allowlist.Reason = "eof"               // both sides finished, or one failed
	ReasonIdleTimeout      allowlist.Reason = "idle_timeout"      // no byte either way for Config.IdleTimeout
	ReasonShutdown         allowlist.Reason = "shutdown"          // the forwarder closed
	ReasonRevoked          allowlist.Reason = "revoked"           // a new allow list no longer allows it
	ReasonAuditUnavailable allowlist.Reason = "audit_unavailable" // its open record could not be kept
)

// Reasons lists the reasons the forwarder defines, for documentation tests.
func Reasons() []allowlist.Reason {
	return append([]allowlist.Reason{
		ReasonNotTLS, ReasonHelloTooLarge, ReasonHelloTimeout, ReasonMalformedHello, ReasonNoSNI, ReasonBadSNI,
		ReasonClientClosed, ReasonTooManyPending, ReasonTooManyConns, ReasonConnRateLimited, ReasonHelloEvicted,
		ReasonResolveFailed, ReasonPrivateTarget, ReasonUpstreamFailed, ReasonParentFailed, ReasonNoDescriptors,
		ReasonRoute,
		ReasonEOF, ReasonIdleTimeout, ReasonShutdown, ReasonRevoked, ReasonAuditUnavailable,
	}, httpfront.Reasons()...)
}

// Event is one record of a connection's life, for logs and the audit trail.
type Event struct {
	Kind   EventKind
	ID     uint64 // unique per Forwarder, shared by a stream's open and close
	Time   time.Time
	Client netip.AddrPort
	Port   uint16 // the port the device connected to
	// Proto is what the port read: TLS (a tcp route's events too), HTTP or CONNECT.
	Proto Front
	// SNI is the name decided on: the hello's, an HTTP Host, a CONNECT's host (or address).
	SNI  allowlist.Name
	ALPN []string
	ECH  bool // the hello carried an encrypted_client_hello extension; SNI is the outer name
	// Verdict is what was done; Reason says why (a hello error, an allow-list reason, an
	// upstream failure on deny, or how the stream ended on close).
	Verdict  Verdict
	Reason   allowlist.Reason
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
	// Origin is the level-identity header the connection arrived with from a child box:
	// the device behind it and the boxes it passed. Zero (Hops 0): none.
	Origin levelid.Header
}

// emit logs the event and hands it to OnEvent, returning OnEvent's error.
func (f *Forwarder) emit(e Event) error {
	e.Time = time.Now()
	f.logEvent(e) // first: whoever OnEvent wakes may read the log at once
	if f.cfg.OnEvent != nil {
		return f.cfg.OnEvent(e)
	}
	return nil
}

// logEvent writes the event to the process log at debug level: the audit trail already holds
// every connection, so at the default level the process log keeps lifecycle, errors and
// summaries, not a line (a journal line under systemd) per connection.
func (f *Forwarder) logEvent(e Event) {
	const level = slog.LevelDebug
	if !f.log.Enabled(f.ctx, level) {
		return
	}
	attrs := []slog.Attr{
		slog.Uint64("id", e.ID),
		slog.String("client", e.Client.String()),
		slog.Int("port", int(e.Port)),
		slog.String("proto", e.Proto.String()),
		slog.String("verdict", e.Verdict.String()),
		slog.String("reason", string(e.Reason)),
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
	if e.Origin.Hops > 0 {
		attrs = append(attrs, slog.String("origin", e.Origin.Device.String()), slog.Any("origin_path", e.Origin.Path))
	}
	if e.Kind == EventClose {
		attrs = append(attrs, slog.Int64("bytes_up", e.BytesUp), slog.Int64("bytes_down", e.BytesDown),
			slog.Int64("duration_ms", e.Duration.Milliseconds()))
	}
	f.log.LogAttrs(f.ctx, level, "conn "+string(e.Kind), attrs...)
}
