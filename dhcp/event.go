package dhcp

import "time"

// EventKind is a lease event: what the server did for a client. The trail records each as a
// record of kind dhcp with this word as its event.
type EventKind string

const (
	EventOffer   EventKind = "offer"   // an address offered to a DISCOVER
	EventAck     EventKind = "ack"     // a lease granted or extended (REQUEST)
	EventNak     EventKind = "nak"     // a REQUEST refused; the reason says why
	EventRelease EventKind = "release" // the client gave its address back (RELEASE)
	EventExpire  EventKind = "expire"  // a lease ran out without renewal
	EventDecline EventKind = "decline" // the client found the address in use (DECLINE)
	EventInform  EventKind = "inform"  // settings sent to a client with its own address (INFORM)
)

// EventKinds lists every event, for documentation tests.
func EventKinds() []EventKind {
	return []EventKind{EventOffer, EventAck, EventNak, EventRelease, EventExpire, EventDecline, EventInform}
}

// Reason says why the server answered as it did, or why it stayed silent. Reasons of
// silent decisions (ReasonOtherServer, ReasonUnknownClient, ReasonPoolFull, ReasonMalformed)
// are logged, not recorded: a device on a busy network sends them all day.
type Reason string

const (
	ReasonLeased        Reason = "leased"         // offer and ack: the address is the client's
	ReasonReserved      Reason = "reserved"       // offer and ack: the address is the client's reservation
	ReasonWrongNetwork  Reason = "wrong_network"  // nak: the requested address is not on this network
	ReasonAddressTaken  Reason = "address_taken"  // nak: the address is leased to, reserved for or declined by another
	ReasonNotLeased     Reason = "not_leased"     // nak: the client asks for an address this server did not offer or lease to it
	ReasonOtherServer   Reason = "other_server"   // silent: the client chose another server's offer
	ReasonUnknownClient Reason = "unknown_client" // silent: INIT-REBOOT of a client this server has no record of
	ReasonPoolFull      Reason = "pool_full"      // silent: no free address for a DISCOVER
	ReasonMalformed     Reason = "malformed"      // silent: not a well-formed client message
	ReasonNotHeld       Reason = "not_held"       // silent: RELEASE or DECLINE of an address the client does not hold
)

// Reasons lists the reasons that lease events carry, for documentation tests.
func Reasons() []Reason {
	return []Reason{ReasonLeased, ReasonReserved, ReasonWrongNetwork, ReasonAddressTaken, ReasonNotLeased}
}

// Event is one lease event, for the audit trail. Lease is the lease after the event (for a
// nak, the address asked for and the client).
type Event struct {
	Time   time.Time
	Kind   EventKind
	Reason Reason
	Lease  Lease
}
