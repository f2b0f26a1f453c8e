package auditview

import (
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/lnm-project/lnm/audit"
)

// `lnm audit trace`: one connection, recorded at a parent box, followed down through the
// logs of the boxes below it to the device that opened it. A parent's record carries the
// child's origin (level identity): the device, the path of boxes, and the connection's id
// at the child, which names the child's own records of it; the child's open record carries
// its child's origin in turn, and the first box's record has none: its client is the device.

// Hop is what one box recorded of a traced connection.
type Hop struct {
	Box string
	ID  uint64 // the connection's id at Box; 0: unknown (a log below was missing)
	// First is the box's open (or deny) record and Close its close; nil when the logs
	// given hold none.
	First, Close *audit.Record
}

// Lookup returns a box's conn records with the given id, in any order. Ids restart with
// the box's process, so more than one connection may answer; Trace picks the one nearest
// to near. A lookup may leave out records from before near less MaxSkew (the child's open
// comes a moment before its parent's; its close may come days later).
type Lookup func(box string, id uint64, near time.Time) ([]*audit.Record, error)

// MaxSkew is how far apart two boxes' clocks may be for a trace to find a child's records.
const MaxSkew = time.Hour

// maxTraceHops bounds a trace however the logs are made (levelid.MaxHops).
const maxTraceHops = 16

// Trace follows start, any conn record of a connection, down to its device. It returns the
// device (its address and port at the first box; invalid when no record says) and the hops
// from the first box up to start's. A box whose records are not found is a Hop with First
// nil; the boxes below it are known only by name, from start's origin.
func Trace(start *audit.Record, lookup Lookup) (netip.AddrPort, []Hop, error) {
	if start.Kind != audit.KindConn {
		return netip.AddrPort{}, nil, fmt.Errorf("record %d is a %s record, not a connection's", start.Seq, start.Kind)
	}
	var hops []Hop
	box, id, near := start.Box, start.ID, start.Time
	var device netip.AddrPort
	var path []string // from the last origin read: the boxes still below
	for range maxTraceHops {
		recs, err := lookup(box, id, near)
		if err != nil {
			return device, nil, err
		}
		h := Hop{Box: box, ID: id}
		h.First, h.Close = pick(recs, near)
		if h.First == nil && box == start.Box && id == start.ID {
			h.First = start // a log without its open: the record itself stands for it
		}
		hops = append(hops, h)
		if h.First == nil {
			break
		}
		o := h.First.Origin
		if o == nil {
			device, path = h.First.Client, nil
			break
		}
		device, path = o.Device, o.Path
		if len(o.Path) == 0 {
			break
		}
		box, id, near = o.Path[len(o.Path)-1], o.ID, h.First.Time
		path = o.Path[:len(o.Path)-1]
	}
	// Boxes below a missing log, known by name from the last origin read.
	if last := hops[len(hops)-1]; last.First == nil {
		for i := len(path) - 1; i >= 0; i-- {
			hops = append(hops, Hop{Box: path[i]})
		}
	}
	for i, j := 0, len(hops)-1; i < j; i, j = i+1, j-1 {
		hops[i], hops[j] = hops[j], hops[i]
	}
	return device, hops, nil
}

// pick chooses, among one box's records of an id, the connection whose open or deny is
// nearest to near (the parent's record: the child's comes a moment before, give or take
// the two clocks), and that connection's close.
func pick(recs []*audit.Record, near time.Time) (first, closed *audit.Record) {
	dist := func(r *audit.Record) time.Duration { return r.Time.Sub(near).Abs() }
	for _, r := range recs {
		if r.Kind != audit.KindConn || r.Event == audit.EventClose {
			continue
		}
		if first == nil || dist(r) < dist(first) {
			first = r
		}
	}
	if first == nil {
		return nil, nil
	}
	for _, r := range recs {
		if r.Kind == audit.KindConn && r.Event == audit.EventClose && r.Seq > first.Seq && (closed == nil || r.Seq < closed.Seq) {
			closed = r
		}
	}
	return first, closed
}

// TraceHeader heads the trace table: BOX stands where the query table has KIND.
var TraceHeader = Row{"SEQ", "TIME", "BOX", "CLIENT", "NAME/SNI", "VERDICT", "DETAIL"}

// WriteTrace writes the device, then each box's records from the first box up.
func (rd *Renderer) WriteTrace(w io.Writer, device netip.AddrPort, hops []Hop) error {
	dev := "unknown"
	if device.IsValid() {
		dev = device.String()
	}
	if _, err := fmt.Fprintf(w, "device %s\n", dev); err != nil {
		return err
	}
	rows := []Row{TraceHeader}
	for _, h := range hops {
		for _, r := range []*audit.Record{h.First, h.Close} {
			if r == nil {
				continue
			}
			row := rd.Row(r)
			row[colKind] = Field(r.Box) + " (" + strconv.Itoa(r.Level) + ")"
			rows = append(rows, row)
		}
		if h.First == nil {
			note := "not in the logs given"
			if h.ID != 0 {
				note += " (its id " + strconv.FormatUint(h.ID, 10) + ")"
			}
			rows = append(rows, Row{"-", "-", Field(h.Box), "-", "-", "-", note})
		}
	}
	var widths [ColDetail]int
	for _, r := range rows {
		for i := range widths {
			widths[i] = max(widths[i], len([]rune(r[i])))
		}
	}
	for _, r := range rows {
		if err := WriteRow(w, r, widths); err != nil {
			return err
		}
	}
	return nil
}

// originText describes a record's origin for the DETAIL column.
func originText(o *audit.Origin) string {
	path := make([]string, len(o.Path))
	for i, b := range o.Path {
		path[i] = Field(b)
	}
	return "origin " + o.Device.String() + " via " + strings.Join(path, ",") + " id " + strconv.FormatUint(o.ID, 10)
}
