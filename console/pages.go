package console

import (
	"bytes"
	"cmp"
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lnm-project/lnm/adminapi"
	"github.com/lnm-project/lnm/allowlist"
	"github.com/lnm-project/lnm/audit"
)

//go:embed templates/*.html static/*
var files embed.FS

// Request bounds: a query string longer than maxQuery and a form body larger than maxForm
// are refused before anything reads them.
const (
	maxQuery = 4096
	maxForm  = 64 << 10
)

// Record bounds: the Devices, Names and Learn pages read at most recentMax records of the
// last recentAge; Audit search shows at most searchMax rows (its export has no bound but the
// filter's limit).
const (
	recentAge = time.Hour
	recentMax = 20000
	searchMax = 1000
)

var pages = parsePages()

func parsePages() map[string]*template.Template {
	funcs := template.FuncMap{
		"when":  func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05") },
		"ago":   func(t time.Time) string { return time.Since(t).Round(time.Second).String() },
		"join":  strings.Join,
		"bytes": humanBytes,
		"denied": func(v string) bool {
			return v == audit.VerdictDeny || v == audit.VerdictWouldDeny || v == audit.VerdictRefused
		},
	}
	base := template.Must(template.New("base.html").Funcs(funcs).ParseFS(files, "templates/base.html"))
	out := map[string]*template.Template{}
	for _, p := range []string{"signin", "error", "overview", "live", "devices", "names", "allow", "learn", "audit"} {
		out[p] = template.Must(template.Must(base.Clone()).ParseFS(files, "templates/"+p+".html"))
	}
	return out
}

func humanBytes(v any) string {
	var n int64
	switch x := v.(type) {
	case int64:
		n = x
	case uint64:
		n = int64(min(x, 1<<62))
	}
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// view is what every page template gets.
type view struct {
	Box   string
	Page  string
	User  string
	Role  Role
	CSRF  string
	Error string // shown in red above the page
	Note  string // shown in green above the page
	Data  any
}

// IsAdmin says whether the page may offer changes (the server checks again on each one).
func (v view) IsAdmin() bool { return v.Role == RoleAdmin }

type sessionKey struct{}

func sessionOf(r *http.Request) session {
	s, _ := r.Context().Value(sessionKey{}).(session)
	return s
}

// render writes page with code.
func (s *Server) render(w http.ResponseWriter, r *http.Request, code int, page string, v view) {
	ss := sessionOf(r)
	v.Box, v.Page, v.User, v.Role, v.CSRF = s.opt.Box, page, ss.user, ss.role, ss.csrf
	var b bytes.Buffer
	if err := pages[page].ExecuteTemplate(&b, "base.html", v); err != nil {
		s.log.Error("console: template", "page", page, "err", err)
		http.Error(w, "console: page failed to render", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	w.Write(b.Bytes())
}

// fail answers with the error page: the status and a sentence saying why.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, code int, msg string) {
	s.render(w, r, code, "error", view{Error: msg})
}

// apiFail answers a failed admin API call.
func (s *Server) apiFail(w http.ResponseWriter, r *http.Request, err error) {
	var se *adminapi.StatusError
	var un *adminapi.UnreachableError
	switch {
	case errors.As(err, &un):
		s.fail(w, r, http.StatusBadGateway, "the box's admin API does not answer: "+err.Error())
	case errors.As(err, &se):
		s.fail(w, r, http.StatusBadGateway, err.Error())
	default:
		s.fail(w, r, http.StatusBadGateway, "admin API: "+err.Error())
	}
}

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /static/", http.FileServerFS(files))
	mux.HandleFunc("GET /signin", s.signinPage)
	mux.HandleFunc("POST /signin", s.signin)
	mux.Handle("POST /signout", s.guard(false, s.signout))
	mux.Handle("GET /{$}", s.guard(false, s.overview))
	mux.Handle("GET /live", s.guard(false, s.livePage))
	mux.Handle("GET /live/events", s.guard(false, s.liveEvents))
	mux.Handle("GET /devices", s.guard(false, s.devices))
	mux.Handle("GET /names", s.guard(false, s.names))
	mux.Handle("GET /allow", s.guard(false, s.allowPage))
	mux.Handle("POST /allow/add", s.guard(true, s.allowAdd))
	mux.Handle("POST /allow/remove", s.guard(true, s.allowRemove))
	mux.Handle("GET /learn", s.guard(false, s.learn))
	mux.Handle("POST /learn/mode", s.guard(true, s.setMode))
	mux.Handle("GET /audit", s.guard(false, s.auditSearch))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-store")
		if len(r.URL.RawQuery) > maxQuery {
			s.fail(w, r, http.StatusRequestURITooLong, fmt.Sprintf("the query string has %d bytes, more than %d: shorten the filter", len(r.URL.RawQuery), maxQuery))
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// guard lets through requests of a live session. A change (POST) must carry the session's
// CSRF token, and with admin set, come from an admin; anything else is refused before the
// handler runs, so nothing changes.
func (s *Server) guard(admin bool, next http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var ss session
		ok := false
		if c, err := r.Cookie(sessionCookie); err == nil {
			ss, ok = s.sessions.get(c.Value, s.opt.Now())
		}
		if !ok {
			if r.Method == http.MethodGet && r.URL.Path != "/live/events" {
				http.Redirect(w, r, "/signin?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
				return
			}
			s.fail(w, r, http.StatusUnauthorized, "you are signed out (or the session is unknown): sign in again; nothing was changed")
			return
		}
		r = r.WithContext(context.WithValue(r.Context(), sessionKey{}, ss))
		if r.Method == http.MethodPost {
			r.Body = http.MaxBytesReader(w, r.Body, maxForm)
			if err := r.ParseForm(); err != nil {
				s.fail(w, r, http.StatusBadRequest, "the form could not be read: "+err.Error())
				return
			}
			if !sameToken(r.PostForm.Get("csrf"), ss.csrf) {
				s.fail(w, r, http.StatusForbidden, "the request has no valid CSRF token (reload the page and try again); nothing was changed")
				return
			}
			if admin && ss.role != RoleAdmin {
				s.fail(w, r, http.StatusForbidden, fmt.Sprintf("user %s has role %s: only an admin may change this; nothing was changed", ss.user, ss.role))
				return
			}
		}
		next(w, r)
	})
}

// localNext keeps a post-sign-in redirect on this site.
func localNext(s string) string {
	if !strings.HasPrefix(s, "/") || strings.HasPrefix(s, "//") || strings.HasPrefix(s, "/\\") {
		return "/"
	}
	return s
}

func (s *Server) signinPage(w http.ResponseWriter, r *http.Request) {
	tok := newToken()
	setCookie(w, signinCookie, tok, 600)
	s.render(w, r, http.StatusOK, "signin", view{Data: map[string]string{"Token": tok, "Next": localNext(r.URL.Query().Get("next"))}})
}

func remoteAddr(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.IPv4Unspecified()
	}
	return ap.Addr()
}

func (s *Server) signin(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	if err := r.ParseForm(); err != nil {
		s.fail(w, r, http.StatusBadRequest, "the form could not be read: "+err.Error())
		return
	}
	c, err := r.Cookie(signinCookie)
	if err != nil || !sameToken(r.PostForm.Get("csrf"), c.Value) {
		s.fail(w, r, http.StatusForbidden, "the sign-in form has no valid CSRF token: open the sign-in page again")
		return
	}
	src, now := remoteAddr(r), s.opt.Now()
	retry := func(code int, msg string) {
		tok := newToken()
		setCookie(w, signinCookie, tok, 600)
		s.render(w, r, code, "signin", view{Error: msg, Data: map[string]string{"Token": tok, "Next": localNext(r.PostForm.Get("next"))}})
	}
	if d := s.throttle.wait(src, now); d > 0 {
		secs := int(d.Round(time.Second) / time.Second)
		w.Header().Set("Retry-After", strconv.Itoa(max(secs, 1)))
		retry(http.StatusTooManyRequests, fmt.Sprintf("too many failed sign-ins from %s: wait %d s", src, max(secs, 1)))
		return
	}
	u, err := authenticate(s.users, r.PostForm.Get("user"), r.PostForm.Get("password"))
	if err != nil {
		if errors.Is(err, errBadCredentials) {
			s.throttle.failed(src, now)
			s.log.Warn("console: failed sign-in", "user", r.PostForm.Get("user"), "source", src)
			retry(http.StatusUnauthorized, err.Error())
			return
		}
		s.log.Error("console: users file", "err", err)
		retry(http.StatusInternalServerError, err.Error())
		return
	}
	s.throttle.succeeded(src)
	id, _ := s.sessions.start(u, now)
	setCookie(w, sessionCookie, id, int(sessionMax/time.Second))
	setCookie(w, signinCookie, "", -1)
	s.log.Info("console: signed in", "user", u.Name, "role", u.Role, "source", src)
	http.Redirect(w, r, localNext(r.PostForm.Get("next")), http.StatusSeeOther)
}

func (s *Server) signout(w http.ResponseWriter, r *http.Request) {
	if c, err := r.Cookie(sessionCookie); err == nil {
		s.sessions.end(c.Value)
	}
	setCookie(w, sessionCookie, "", -1)
	http.Redirect(w, r, "/signin", http.StatusSeeOther)
}

// overviewView is the Overview page's data: `lnm status` and the last hour by minute.
type overviewView struct {
	*adminapi.Status
	Chart   chart
	Console string // the console's own address; empty when served by a test
}

// chart is the last hour in one bar a minute, oldest first: DNS queries and connections,
// and the denials among them, scaled to chartHeight.
type chart struct {
	Bars          []bar
	Max, Denials  int
	Width, Height int
}

type bar struct {
	X, H, DenyH, Y, DenyY int
	Label                 string
}

const chartHeight = 60

// chartOf counts the records per minute of the hour before now.
func chartOf(recs []audit.Record, now time.Time) chart {
	var all, denied [60]int
	for i := range recs {
		r := &recs[i]
		if r.Kind != audit.KindDNS && !(r.Kind == audit.KindConn && r.Event != audit.EventClose) {
			continue
		}
		m := int(now.Sub(r.Time) / time.Minute)
		if m < 0 || m >= 60 {
			continue
		}
		all[59-m]++
		if r.Verdict != audit.VerdictAllow {
			denied[59-m]++
		}
	}
	c := chart{Width: 60 * 8, Height: chartHeight}
	for i := range all {
		c.Max = max(c.Max, all[i])
		c.Denials += denied[i]
	}
	for i := range all {
		b := bar{X: i * 8, Label: fmt.Sprintf("%d min ago: %d, %d denied", 59-i, all[i], denied[i])}
		if c.Max > 0 {
			b.H, b.DenyH = all[i]*chartHeight/c.Max, denied[i]*chartHeight/c.Max
		}
		b.Y, b.DenyY = chartHeight-b.H, chartHeight-b.DenyH
		c.Bars = append(c.Bars, b)
	}
	return c
}

func (s *Server) overview(w http.ResponseWriter, r *http.Request) {
	_, st, err := s.opt.Admin.Status(r.Context())
	if err != nil {
		s.apiFail(w, r, err)
		return
	}
	recs, err := s.recent(r.Context(), audit.Filter{})
	if err != nil {
		s.apiFail(w, r, err)
		return
	}
	s.render(w, r, http.StatusOK, "overview", view{Data: overviewView{Status: st, Chart: chartOf(recs, s.opt.Now()), Console: s.addr}})
}

// recent reads the records of the last recentAge (at most recentMax, the newest) that f
// also selects.
func (s *Server) recent(ctx context.Context, f audit.Filter) ([]audit.Record, error) {
	f.Since, f.Limit = s.opt.Now().Add(-recentAge), recentMax
	var out []audit.Record
	err := s.opt.Admin.Records(ctx, adminapi.Query{Filter: f}, func(r *audit.Record) error {
		out = append(out, *r)
		return nil
	})
	return out, err
}

// device is one row of the Devices page.
type device struct {
	Addr                 netip.Addr
	Name, MAC            string
	Queries, Conns       int
	Denied               int
	BytesUp, BytesDown   int64
	Names, Denials, Flag []string
	Last                 time.Time
}

func addUnique(s []string, v string) []string {
	if v == "" || slices.Contains(s, v) {
		return s
	}
	return append(s, v)
}

// devices aggregates records per client address, naming each by its DHCP lease when the
// record itself carries no device name.
func devicesOf(recs []audit.Record, leases []adminapi.DHCPLease) []*device {
	by := map[netip.Addr]*device{}
	get := func(a netip.Addr) *device {
		d := by[a]
		if d == nil {
			d = &device{Addr: a}
			by[a] = d
		}
		return d
	}
	for _, l := range leases {
		if l.State == "bound" {
			d := get(l.Addr)
			d.Name, d.MAC = l.Device, l.MAC
		}
	}
	for i := range recs {
		r := &recs[i]
		if !r.Client.IsValid() || (r.Kind != audit.KindDNS && r.Kind != audit.KindConn) {
			continue
		}
		d := get(r.Client.Addr().Unmap())
		d.Name, d.MAC = cmp.Or(r.Device, d.Name), cmp.Or(r.MAC, d.MAC)
		if r.Time.After(d.Last) {
			d.Last = r.Time
		}
		name := r.Name
		if r.Kind == audit.KindDNS {
			d.Queries++
		} else {
			name = r.SNI
			if r.Event != audit.EventClose {
				d.Conns++
			}
			d.BytesUp += r.BytesUp
			d.BytesDown += r.BytesDown
			for _, f := range r.Flags {
				d.Flag = addUnique(d.Flag, f)
			}
		}
		if len(d.Names) < 50 {
			d.Names = addUnique(d.Names, name)
		}
		if r.Verdict == audit.VerdictDeny || r.Verdict == audit.VerdictWouldDeny || r.Verdict == audit.VerdictRefused {
			d.Denied++
			if len(d.Denials) < 50 {
				d.Denials = addUnique(d.Denials, name)
			}
		}
	}
	out := make([]*device, 0, len(by))
	for _, d := range by {
		out = append(out, d)
	}
	slices.SortFunc(out, func(a, b *device) int { return a.Addr.Compare(b.Addr) })
	return out
}

func (s *Server) devices(w http.ResponseWriter, r *http.Request) {
	recs, err := s.recent(r.Context(), audit.Filter{})
	if err != nil {
		s.apiFail(w, r, err)
		return
	}
	var leases []adminapi.DHCPLease
	l, err := s.opt.Admin.DHCPLeases(r.Context())
	var se *adminapi.StatusError
	switch {
	case err == nil:
		leases = l.Leases
	case errors.As(err, &se) && se.Code == http.StatusNotFound: // no DHCP
	default:
		s.apiFail(w, r, err)
		return
	}
	s.render(w, r, http.StatusOK, "devices", view{Data: devicesOf(recs, leases)})
}

// name is one row of the Names page.
type name struct {
	Name               string
	Devices            []string
	Allowed, Denied    int
	Verdict, Rule, Why string // of the last record
	Last               time.Time
	// Near and Explain are `allow test`'s answer for a name last denied: the nearest rule
	// and why it did not match.
	Near, Explain string
	query         allowlist.Query
}

func namesOf(recs []audit.Record) []*name {
	by := map[string]*name{}
	for i := range recs {
		r := &recs[i]
		n := r.Name
		if r.Kind == audit.KindConn {
			n = r.SNI
		}
		if n == "" || (r.Kind == audit.KindConn && r.Event == audit.EventClose) {
			continue
		}
		e := by[n]
		if e == nil {
			e = &name{Name: n}
			by[n] = e
		}
		dev := cmp.Or(r.Device, r.Client.Addr().Unmap().String())
		if len(e.Devices) < 20 {
			e.Devices = addUnique(e.Devices, dev)
		}
		if r.Verdict == audit.VerdictAllow {
			e.Allowed++
		} else {
			e.Denied++
		}
		if !r.Time.Before(e.Last) {
			e.Last, e.Verdict, e.Rule, e.Why = r.Time, r.Verdict, r.Rule, r.Reason
			e.query = allowlist.Query{Name: allowlist.Name(n), Port: r.Port, Source: r.Client.Addr().Unmap()}
			if r.Kind != audit.KindConn {
				e.query.Port = 0
			}
		}
	}
	out := make([]*name, 0, len(by))
	for _, e := range by {
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b *name) int { return cmp.Or(b.Denied-a.Denied, strings.Compare(a.Name, b.Name)) })
	return out
}

func (s *Server) names(w http.ResponseWriter, r *http.Request) {
	recs, err := s.recent(r.Context(), audit.Filter{})
	if err != nil {
		s.apiFail(w, r, err)
		return
	}
	al, err := s.opt.Admin.AllowList(r.Context())
	if err != nil {
		s.apiFail(w, r, err)
		return
	}
	names := namesOf(recs)
	if l, err := listOf(al); err == nil {
		for _, n := range names {
			if n.Verdict == audit.VerdictDeny || n.Verdict == audit.VerdictWouldDeny {
				e := allowlist.Explain(l, n.query)
				if e.Near != nil {
					n.Near = e.Near.String() + " (" + e.Near.Origin + ")"
				}
				n.Explain = e.Why
			}
		}
	}
	s.render(w, r, http.StatusOK, "names", view{Data: names})
}

// listOf rebuilds the running list from the admin API's rules, for allowlist.Explain, the
// explanation `lnm allow test` gives.
func listOf(al adminapi.AllowList) (*allowlist.List, error) {
	rules := make([]allowlist.Rule, 0, len(al.Rules))
	for _, ar := range al.Rules {
		spec := adminapi.RuleSpec{Pattern: ar.Pattern, From: ar.From, To: ar.To}
		for _, p := range ar.Ports {
			spec.Ports = append(spec.Ports, int(p))
		}
		rule, err := spec.Rule()
		if err != nil {
			return nil, err
		}
		rule.Origin = ar.Origin
		rules = append(rules, rule)
	}
	return allowlist.New(rules)
}
