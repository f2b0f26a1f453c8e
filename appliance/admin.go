package appliance

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sys/unix"

	"github.com/lnm-project/lnm/adminapi"
	"github.com/lnm-project/lnm/audit"
	"github.com/lnm-project/lnm/config"
	"github.com/lnm-project/lnm/forwarder"
)

// adminServer serves the admin API on a Unix socket.
type adminServer struct {
	rt   *Runtime
	ln   net.Listener
	srv  *http.Server
	path string
}

// listenAdmin binds the admin socket (mode 0660, its directory created 0750). A socket file
// left by a box that died is replaced; one that still answers is an error, since two boxes
// must not share it.
func listenAdmin(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("appliance: admin socket: %w", err)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("appliance: admin socket %s is in use by another lnm", path)
	}
	os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("appliance: admin socket: %w", err)
	}
	if err := os.Chmod(path, 0o660); err != nil {
		ln.Close()
		return nil, fmt.Errorf("appliance: admin socket: %w", err)
	}
	return ln, nil
}

func newAdminServer(rt *Runtime, ln net.Listener, path string) *adminServer {
	a := &adminServer{rt: rt, ln: ln, path: path}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+adminapi.PathAudit, a.audit)
	mux.HandleFunc("GET "+adminapi.PathAuditFollow, a.follow)
	mux.HandleFunc("GET "+adminapi.PathStatus, a.status)
	mux.HandleFunc("POST "+adminapi.PathReload, a.reload)
	mux.HandleFunc("POST "+adminapi.PathMode, a.mode)
	mux.HandleFunc("GET "+adminapi.PathDHCPLeases, a.dhcpLeases)
	a.allowRoutes(mux)
	a.srv = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		ErrorLog:          slog.NewLogLogger(rt.log.Handler(), slog.LevelWarn),
		ConnContext:       withPeerUID,
	}
	return a
}

// peerUIDKey carries the unix uid of the process on the other end of an admin connection.
type peerUIDKey struct{}

// withPeerUID reads the peer's credentials (SO_PEERCRED) once per connection, so that
// changes are recorded with who asked for them.
func withPeerUID(ctx context.Context, c net.Conn) context.Context {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return ctx
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return ctx
	}
	var cred *unix.Ucred
	raw.Control(func(fd uintptr) {
		cred, err = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	})
	if err != nil || cred == nil {
		return ctx
	}
	uid := int(cred.Uid)
	return context.WithValue(ctx, peerUIDKey{}, &uid)
}

// PeerUID returns the uid of the admin API's caller, or nil when it is not known.
func PeerUID(ctx context.Context) *int {
	uid, _ := ctx.Value(peerUIDKey{}).(*int)
	return uid
}

// Caller is who asked for a change: the socket peer's uid and, when a program on the socket
// acts for its own user (the web console), that user's name. The zero Caller is the box
// itself (start, SIGHUP).
type Caller struct {
	UID  *int
	User string
}

// callerOf reads a request's Caller; a HeaderUser value that is not a user name is an error.
func callerOf(r *http.Request) (Caller, error) {
	c := Caller{UID: PeerUID(r.Context()), User: r.Header.Get(adminapi.HeaderUser)}
	if c.User != "" {
		if err := adminapi.CheckUser(c.User); err != nil {
			return c, fmt.Errorf("header %s: %v", adminapi.HeaderUser, err)
		}
	}
	return c, nil
}

// reload answers POST /v1/reload: the box reads its config file again and applies it, or
// keeps the running one and answers 422 with the file's errors.
func (a *adminServer) reload(w http.ResponseWriter, r *http.Request) {
	path := a.rt.config().File
	who, err := callerOf(r)
	if err != nil {
		apiError(w, http.StatusBadRequest, err)
		return
	}
	next, err := config.Load(path)
	if err == nil {
		err = a.rt.Reload(next, who)
	}
	if err != nil {
		apiError(w, http.StatusUnprocessableEntity, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	list := a.rt.currentList()
	json.NewEncoder(w).Encode(adminapi.ReloadReply{Config: path, Hash: listHash(list), Rules: list.Len()})
}

// mode answers POST /v1/mode?mode=learn|enforce.
func (a *adminServer) mode(w http.ResponseWriter, r *http.Request) {
	var learn bool
	switch m := r.URL.Query().Get("mode"); m {
	case "learn":
		learn = true
	case "enforce":
	default:
		apiError(w, http.StatusBadRequest, fmt.Errorf("mode %q: want learn or enforce", m))
		return
	}
	who, err := callerOf(r)
	if err != nil {
		apiError(w, http.StatusBadRequest, err)
		return
	}
	if err := a.rt.SetLearn(learn, who); err != nil {
		apiError(w, http.StatusInternalServerError, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(adminapi.ModeReply{Learn: learn})
}

func (a *adminServer) serve() {
	if err := a.srv.Serve(a.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		a.rt.log.Error("admin API stopped", "err", err)
	}
}

// close stops the server; followers are cut, since their streams never end on their own.
func (a *adminServer) close() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := a.srv.Shutdown(ctx); err != nil {
		a.srv.Close()
	}
	os.Remove(a.path)
}

func apiError(w http.ResponseWriter, code int, err error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(adminapi.APIError{Error: err.Error()})
}

// audit answers GET /v1/audit: records in seq order from memory, and from the log files for
// the part of the range the store no longer holds.
func (a *adminServer) audit(w http.ResponseWriter, r *http.Request) {
	q, err := adminapi.ParseQuery(r.URL.Query())
	if err != nil {
		apiError(w, http.StatusBadRequest, err)
		return
	}
	recs, err := a.rt.records(q)
	if err != nil {
		apiError(w, http.StatusInternalServerError, err)
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	buf := make([]byte, 0, 64<<10)
	for i := range recs {
		buf = append(recs[i].AppendJSON(buf), '\n')
		if len(buf) > 60<<10 {
			if _, err := w.Write(buf); err != nil {
				return
			}
			buf = buf[:0]
		}
	}
	w.Write(buf)
}

// records selects what GET /v1/audit returns.
func (rt *Runtime) records(q adminapi.Query) ([]audit.Record, error) {
	if len(q.Seqs) > 0 {
		var out []audit.Record
		for _, seq := range q.Seqs {
			if rec, ok := rt.store.Get(seq); ok {
				out = append(out, rec)
			}
		}
		return out, nil
	}
	cfg := rt.config()
	recent := rt.store.Query(q.Filter)
	if cfg.AuditDir == "" || (q.Limit > 0 && len(recent) >= q.Limit) {
		return recent, nil
	}
	// The store holds everything from its oldest record on; older records live only in the
	// log files.
	oldest := rt.store.Oldest()
	if oldest.IsZero() {
		oldest = time.Now()
	}
	older := q.Filter
	if older.Until.IsZero() || oldest.Before(older.Until) {
		older.Until = oldest
	}
	if !older.Since.IsZero() && !older.Since.Before(older.Until) {
		return recent, nil
	}
	var fromFiles []audit.Record
	var err error
	if q.Limit > 0 {
		fromFiles, err = audit.ReadNewest(cfg.AuditDir, older, q.Limit-len(recent))
	} else {
		err = audit.Read(cfg.AuditDir, older, func(r *audit.Record) bool {
			fromFiles = append(fromFiles, *r)
			return true
		})
	}
	if err != nil && !errors.Is(err, audit.ErrCorrupt) {
		return nil, err
	}
	// The unsynced tail of the log can overlap the store; seq decides.
	first := uint64(0)
	if len(recent) > 0 {
		first = recent[0].Seq
	}
	out := fromFiles[:0]
	for _, rec := range fromFiles {
		if first == 0 || rec.Seq < first {
			out = append(out, rec)
		}
	}
	return append(out, recent...), nil
}

// follow answers GET /v1/audit/follow with a live stream of JSON Lines.
func (a *adminServer) follow(w http.ResponseWriter, r *http.Request) {
	q, err := adminapi.ParseQuery(r.URL.Query())
	if err != nil {
		apiError(w, http.StatusBadRequest, err)
		return
	}
	if a.rt.auditLog == nil {
		apiError(w, http.StatusConflict, errors.New("audit is off: follow streams the audit log, which this box does not keep"))
		return
	}
	ch, stop := a.rt.auditLog.Follow(q.Filter)
	defer stop()
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	flusher, _ := w.(http.Flusher)
	if flusher != nil {
		flusher.Flush()
	}
	buf := make([]byte, 0, 1024)
	for {
		select {
		case <-r.Context().Done():
			return
		case rec, ok := <-ch:
			if !ok {
				return // dropped for falling behind, or the log closed
			}
			buf = append(rec.AppendJSON(buf[:0]), '\n')
			if _, err := w.Write(buf); err != nil {
				return
			}
			if flusher != nil {
				flusher.Flush()
			}
		}
	}
}

func (a *adminServer) status(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(a.rt.Status(r.Context()))
}

// Status reports the box's state for `lnm status`.
func (rt *Runtime) Status(ctx context.Context) adminapi.Status {
	cfg := rt.config()
	now := time.Now()
	st := adminapi.Status{
		Box: rt.trail.box, Level: cfg.Level, Version: rt.version, Config: cfg.File,
		Started: rt.started, UptimeS: int64(now.Sub(rt.started).Seconds()), Mode: "enforce",
		Rules: rt.currentList().Len(), Active: rt.metrics.active.Load(), Listeners: rt.listeners(),
	}
	if rt.Learn() {
		st.Mode = "learn"
	}
	if i := slices.IndexFunc(cfg.Proxies, func(m config.PortMap) bool { return m.Front == forwarder.FrontTLS }); cfg.Parent.IsValid() && i >= 0 {
		st.Parent = probeParent(ctx, netip.AddrPortFrom(cfg.Parent, cfg.Proxies[i].Upstream))
	}
	st.Counters = rt.counters()
	st.TopClients, st.TopNames = rt.top(now.Add(-time.Hour), 5)
	st.Audit = adminapi.AuditStatus{Dir: cfg.AuditDir, Healthy: true, FailOpen: cfg.AuditFailOpen, LastSeq: rt.trail.seq.Load()}
	if rt.auditLog != nil {
		ls := rt.auditLog.Stats()
		st.Audit.Queue, st.Audit.LastSeq, st.Audit.Written, st.Audit.Refused = ls.QueueDepth, ls.LastSeq, ls.Records, ls.RefusedFailing+ls.RefusedFull
		if err := rt.auditLog.Healthy(); err != nil {
			st.Audit.Healthy, st.Audit.Error = false, err.Error()
		}
	}
	ss := rt.store.Stats()
	st.Store = adminapi.StoreStatus{Records: ss.Records(), Bytes: ss.Bytes, Oldest: rt.store.Oldest()}
	return st
}

// probeParent opens and closes a TCP connection to the parent's proxy port. The parent
// records it as a connection that sent no hello.
func probeParent(ctx context.Context, addr netip.AddrPort) *adminapi.ParentStatus {
	ps := &adminapi.ParentStatus{Addr: addr.String()}
	d := net.Dialer{Timeout: 2 * time.Second}
	begin := time.Now()
	c, err := d.DialContext(ctx, "tcp", addr.String())
	if err != nil {
		ps.Error = err.Error()
		return ps
	}
	c.Close()
	ps.Reachable, ps.RTTMS = true, time.Since(begin).Milliseconds()
	return ps
}

// top counts clients and names in the store's records since t (DNS questions and opened or
// denied connections), the n most frequent first.
func (rt *Runtime) top(since time.Time, n int) (clients, names []adminapi.Count) {
	byClient, byName := map[string]int{}, map[string]int{}
	for _, r := range rt.store.Query(audit.Filter{Since: since}) {
		name := r.Name
		switch {
		case r.Kind == audit.KindConn && r.Event != audit.EventClose:
			name = r.SNI
		case r.Kind != audit.KindDNS:
			continue
		}
		if r.Client.IsValid() {
			byClient[r.Client.Addr().String()]++
		}
		if name != "" {
			byName[name]++
		}
	}
	return topN(byClient, n), topN(byName, n)
}

func topN(m map[string]int, n int) []adminapi.Count {
	out := make([]adminapi.Count, 0, len(m))
	for k, v := range m {
		out = append(out, adminapi.Count{Key: k, Count: v})
	}
	slices.SortFunc(out, func(a, b adminapi.Count) int {
		if c := cmp.Compare(b.Count, a.Count); c != 0 {
			return c
		}
		return cmp.Compare(a.Key, b.Key)
	})
	if len(out) > n {
		out = out[:n]
	}
	return out
}

// serveMetrics serves GET /metrics from m's registry in Prometheus' text format, or in its
// protobuf format to scrapers that ask for it, gzipped when they accept gzip. OpenMetrics
// stays off: its encoder types a counter whose name lacks _total as unknown, and the
// retired product's server_total_connections and tls_inspector_sni_* lack it. A collector
// that fails (the process collector reads /proc) loses its series, not the scrape.
func serveMetrics(ln net.Listener, m *boxMetrics, log *slog.Logger) *http.Server {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorLog:      slog.NewLogLogger(log.Handler(), slog.LevelError),
		ErrorHandling: promhttp.ContinueOnError,
	}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics endpoint stopped", "err", err)
		}
	}()
	return srv
}
