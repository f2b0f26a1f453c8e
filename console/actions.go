package console

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/lnm-project/lnm/adminapi"
	"github.com/lnm-project/lnm/audit"
	"github.com/lnm-project/lnm/onboard"
)

// allowView is the Allow list page's data: the list, and the add form's values.
type allowView struct {
	List                          adminapi.AllowList
	Pattern, Ports, From, Comment string
}

func (s *Server) renderAllow(w http.ResponseWriter, r *http.Request, code int, v view, form allowView) {
	list, err := s.opt.Admin.AllowList(r.Context())
	if err != nil {
		s.apiFail(w, r, err)
		return
	}
	form.List = list
	v.Data = form
	s.render(w, r, code, "allow", v)
}

func (s *Server) allowPage(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	s.renderAllow(w, r, http.StatusOK, view{Note: q.Get("note")}, allowView{Pattern: q.Get("pattern"), Ports: q.Get("ports"), From: q.Get("from")})
}

// specOf reads the add form into a RuleSpec: ports and sources separated by spaces or
// commas.
func specOf(f url.Values) (adminapi.RuleSpec, error) {
	spec := adminapi.RuleSpec{
		Pattern: strings.TrimSpace(f.Get("pattern")),
		From:    strings.FieldsFunc(f.Get("from"), splitList),
		Comment: strings.TrimSpace(f.Get("comment")),
	}
	if spec.Pattern == "" {
		return spec, errors.New("pattern: empty; want a name, *.name or .name")
	}
	for _, p := range strings.FieldsFunc(f.Get("ports"), splitList) {
		n, err := strconv.Atoi(p)
		if err != nil {
			return spec, fmt.Errorf("port %q: want a number", p)
		}
		spec.Ports = append(spec.Ports, n)
	}
	if strings.ContainsAny(spec.Comment, "\r\n") || len(spec.Comment) > 200 {
		return spec, errors.New("comment: want one line of at most 200 characters")
	}
	_, err := spec.Rule() // the grammar `lnm allow add` checks with
	return spec, err
}

func splitList(r rune) bool { return r == ' ' || r == ',' }

func (s *Server) allowAdd(w http.ResponseWriter, r *http.Request) {
	form := allowView{Pattern: r.PostForm.Get("pattern"), Ports: r.PostForm.Get("ports"), From: r.PostForm.Get("from"), Comment: r.PostForm.Get("comment")}
	spec, err := specOf(r.PostForm)
	if err != nil {
		s.renderAllow(w, r, http.StatusUnprocessableEntity, view{Error: "rule refused, nothing changed: " + err.Error()}, form)
		return
	}
	ch, err := s.opt.Admin.As(sessionOf(r).user).AllowAdd(r.Context(), adminapi.AllowAdd{Rules: []adminapi.RuleSpec{spec}})
	var se *adminapi.StatusError
	if errors.As(err, &se) {
		s.renderAllow(w, r, se.Code, view{Error: "the box refused the rule, nothing changed: " + se.Msg}, form)
		return
	}
	if err != nil {
		s.apiFail(w, r, err)
		return
	}
	note := "added " + strings.Join(ch.Added, ", ")
	if len(ch.Added) == 0 {
		note = "the list already has " + spec.Pattern
	}
	http.Redirect(w, r, "/allow?note="+url.QueryEscape(note), http.StatusSeeOther)
}

func (s *Server) allowRemove(w http.ResponseWriter, r *http.Request) {
	pattern := strings.TrimSpace(r.PostForm.Get("pattern"))
	ch, err := s.opt.Admin.As(sessionOf(r).user).AllowRemove(r.Context(), pattern)
	var se *adminapi.StatusError
	if errors.As(err, &se) {
		s.renderAllow(w, r, se.Code, view{Error: "nothing removed: " + se.Msg}, allowView{})
		return
	}
	if err != nil {
		s.apiFail(w, r, err)
		return
	}
	http.Redirect(w, r, "/allow?note="+url.QueryEscape("removed "+strings.Join(ch.Removed, ", ")), http.StatusSeeOther)
}

// learnView is the Learn page's data.
type learnView struct {
	Mode        string
	Suggestions []onboard.Suggestion
	Records     int
	Collapse    string
	Client      string
}

func (s *Server) learn(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	v := learnView{Collapse: q.Get("collapse"), Client: q.Get("client")}
	var opt onboard.SuggestOptions
	var f audit.Filter
	if v.Collapse != "" {
		n, err := strconv.Atoi(v.Collapse)
		if err != nil || n < 0 || n == 1 {
			s.fail(w, r, http.StatusBadRequest, fmt.Sprintf("collapse %q: want 0 (never) or 2 or more", v.Collapse))
			return
		}
		opt.Collapse = n
	}
	if v.Client != "" {
		p, err := adminapi.ParseClient(v.Client)
		if err != nil {
			s.fail(w, r, http.StatusBadRequest, err.Error())
			return
		}
		opt.Clients, f.Client = p, p
	}
	_, st, err := s.opt.Admin.Status(r.Context())
	if err != nil {
		s.apiFail(w, r, err)
		return
	}
	v.Mode = st.Mode
	list, err := s.opt.Admin.AllowList(r.Context())
	if err != nil {
		s.apiFail(w, r, err)
		return
	}
	var recs []audit.Record
	for _, verdict := range []string{audit.VerdictWouldDeny, audit.VerdictDeny} {
		f.Verdict = verdict
		rs, err := s.recent(r.Context(), f)
		if err != nil {
			s.apiFail(w, r, err)
			return
		}
		recs = append(recs, rs...)
	}
	v.Records = len(recs)
	have := map[string]bool{}
	for _, rule := range list.Rules {
		have[rule.Rule] = true
	}
	for _, sg := range onboard.Suggest(recs, opt) {
		if !have[sg.Rule.String()] {
			v.Suggestions = append(v.Suggestions, sg)
		}
	}
	s.render(w, r, http.StatusOK, "learn", view{Note: q.Get("note"), Data: v})
}

func (s *Server) setMode(w http.ResponseWriter, r *http.Request) {
	var learn bool
	switch m := r.PostForm.Get("mode"); m {
	case "learn":
		learn = true
	case "enforce":
	default:
		s.fail(w, r, http.StatusBadRequest, fmt.Sprintf("mode %q: want learn or enforce; nothing changed", m))
		return
	}
	if _, err := s.opt.Admin.As(sessionOf(r).user).SetMode(r.Context(), learn); err != nil {
		s.apiFail(w, r, err)
		return
	}
	http.Redirect(w, r, "/learn?note="+url.QueryEscape("mode "+r.PostForm.Get("mode")), http.StatusSeeOther)
}

// auditView is the Audit search page's data.
type auditView struct {
	Form    url.Values
	Records []audit.Record
	Cut     bool // more records matched than the table shows
	Export  string
}

// searchQuery reads the Audit search form with the admin API's own parser; since and until
// may also be durations before now (1h, 90s), as the CLI's --since takes them.
func searchQuery(form url.Values, now time.Time) (adminapi.Query, error) {
	v := url.Values{}
	for k, vs := range form {
		if len(vs) > 0 && vs[0] != "" && k != "format" {
			v.Set(k, vs[0])
		}
	}
	for _, k := range []string{"since", "until"} {
		if d, err := time.ParseDuration(v.Get(k)); err == nil && d > 0 {
			v.Set(k, now.Add(-d).UTC().Format(time.RFC3339Nano))
		}
	}
	return adminapi.ParseQuery(v)
}

func (s *Server) auditSearch(w http.ResponseWriter, r *http.Request) {
	form := r.URL.Query()
	q, err := searchQuery(form, s.opt.Now())
	if err != nil {
		s.render(w, r, http.StatusBadRequest, "audit", view{Error: "search refused: " + err.Error(), Data: auditView{Form: form}})
		return
	}
	if form.Get("format") == "jsonl" {
		s.export(w, r, q)
		return
	}
	show := q.Limit
	if show == 0 || show > searchMax {
		q.Limit = searchMax + 1
	}
	v := auditView{Form: form}
	if len(form) > 0 {
		err = s.opt.Admin.Records(r.Context(), q, func(rec *audit.Record) error {
			v.Records = append(v.Records, *rec)
			return nil
		})
		if err != nil {
			s.apiFail(w, r, err)
			return
		}
		if len(v.Records) > searchMax {
			v.Records, v.Cut = v.Records[len(v.Records)-searchMax:], true
		}
		e := url.Values{}
		for k := range form {
			e.Set(k, form.Get(k))
		}
		e.Set("format", "jsonl")
		v.Export = "/audit?" + e.Encode()
	}
	s.render(w, r, http.StatusOK, "audit", view{Data: v})
}

// export streams the query's records as JSON Lines, as the log and the admin API write them.
func (s *Server) export(w http.ResponseWriter, r *http.Request, q adminapi.Query) {
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Content-Disposition", `attachment; filename="lnm-audit.jsonl"`)
	var buf []byte
	err := s.opt.Admin.Records(r.Context(), q, func(rec *audit.Record) error {
		buf = append(rec.AppendJSON(buf[:0]), '\n')
		_, err := w.Write(buf)
		return err
	})
	if err != nil {
		s.log.Warn("console: export cut", "err", err)
	}
}
