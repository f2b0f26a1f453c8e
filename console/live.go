package console

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lnm-project/lnm/allowlist"
	"github.com/lnm-project/lnm/audit"
)

// maxLive bounds the Live pages open at once: each holds one follow stream on the admin API.
const maxLive = 8

// Live pacing: a stream is flushed every liveFlush and sends at most liveRate records a
// second; that bounds what an open Live page costs the box however busy it is.
const (
	liveFlush = 200 * time.Millisecond
	liveRate  = 500
)

// liveCount counts the open Live streams.
type liveCount struct{ n atomic.Int32 }

// liveEvent is one record as the Live page's script shows it.
type liveEvent struct {
	Seq     uint64 `json:"seq"`
	Time    string `json:"time"`
	Client  string `json:"client"`
	Device  string `json:"device,omitempty"`
	Kind    string `json:"kind"`
	Name    string `json:"name,omitempty"`
	Port    uint16 `json:"port,omitempty"`
	Verdict string `json:"verdict,omitempty"`
	Reason  string `json:"reason,omitempty"`
	Rule    string `json:"rule,omitempty"`
	Change  string `json:"change,omitempty"`
	// Allow is the Allow list page's address with the rule pre-filled, for a denied name.
	Allow string `json:"allow,omitempty"`
}

func eventOf(r *audit.Record) liveEvent {
	e := liveEvent{Seq: r.Seq, Time: r.Time.UTC().Format("15:04:05.000"), Device: r.Device, Kind: string(r.Kind),
		Name: r.Name, Verdict: r.Verdict, Reason: r.Reason, Rule: r.Rule, Change: r.Change}
	if r.Client.IsValid() {
		e.Client = r.Client.Addr().Unmap().String()
	}
	if r.Kind == audit.KindConn {
		e.Name, e.Port = r.SNI, r.Port
	}
	if e.Name != "" && (r.Verdict == audit.VerdictDeny || r.Verdict == audit.VerdictWouldDeny) {
		v := url.Values{"pattern": {e.Name}}
		if r.Kind == audit.KindConn && r.Reason == string(allowlist.ReasonPortNotAllowed) {
			v.Set("ports", fmt.Sprint(r.Port))
		}
		e.Allow = "/allow?" + v.Encode()
	}
	return e
}

func (s *Server) livePage(w http.ResponseWriter, r *http.Request) {
	s.render(w, r, http.StatusOK, "live", view{Data: r.URL.Query()})
}

// liveEvents streams the audit follow stream as server-sent events, one "data:" line of
// liveEvent JSON per record, with the filters of `lnm audit follow`. It ends when the page
// closes or the box stops.
func (s *Server) liveEvents(w http.ResponseWriter, r *http.Request) {
	q, err := searchQuery(r.URL.Query(), s.opt.Now())
	if err != nil {
		s.fail(w, r, http.StatusBadRequest, "filter refused: "+err.Error())
		return
	}
	fl, ok := w.(http.Flusher)
	if !ok {
		s.fail(w, r, http.StatusInternalServerError, "streaming is not supported here")
		return
	}
	if s.live.n.Add(1) > maxLive {
		s.live.n.Add(-1)
		s.fail(w, r, http.StatusServiceUnavailable, fmt.Sprintf("%d Live pages are open already; close one", maxLive))
		return
	}
	defer s.live.n.Add(-1)
	rc := http.NewResponseController(w)
	var mu sync.Mutex // w, dirty, sent, dropped
	dirty, began := false, false
	sent, dropped := 0, 0
	started := func() error {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		w.Write([]byte(": following\n\n"))
		fl.Flush()
		began = true
		return nil
	}
	// Writes are flushed every liveFlush, not per record, and at most liveRate records a
	// second are sent: past it they are counted and the page is told how many it missed.
	stop, done := make(chan struct{}), make(chan struct{})
	defer func() { close(stop); <-done }()
	go func() {
		defer close(done)
		t := time.NewTicker(liveFlush)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			mu.Lock()
			if dropped > 0 {
				fmt.Fprintf(w, "event: dropped\ndata: %d\n\n", dropped)
				dirty, dropped = true, 0
			}
			if dirty {
				rc.SetWriteDeadline(time.Now().Add(30 * time.Second))
				fl.Flush()
				dirty = false
			}
			sent = 0
			mu.Unlock()
		}
	}()
	var buf []byte
	err = s.opt.Admin.Follow(r.Context(), q.Filter, started, func(rec *audit.Record) error {
		mu.Lock()
		defer mu.Unlock()
		if sent >= liveRate*int(liveFlush)/int(time.Second) {
			dropped++
			return nil
		}
		b, _ := json.Marshal(eventOf(rec))
		buf = append(append(append(buf[:0], "data: "...), b...), "\n\n"...)
		sent++
		dirty = true
		_, err := w.Write(buf)
		return err
	})
	if !began && err != nil {
		s.apiFail(w, r, err)
		return
	}
	if r.Context().Err() == nil {
		// The box ended the stream: it stopped, or it dropped a follower that fell behind.
		// The page is told; its EventSource connects again.
		s.log.Debug("console: live stream ended", "err", err)
		mu.Lock()
		w.Write([]byte("event: cut\ndata: the box ended the stream (too many records to follow, or it stopped)\n\n"))
		fl.Flush()
		mu.Unlock()
	}
}
