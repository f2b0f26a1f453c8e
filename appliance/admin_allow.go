package appliance

// The allow-list operations of the admin API (GET, POST and DELETE /v1/allow, see package adminapi)
// and the functions the CLI calls when no box is running. Both paths edit the managed file
// through config.EditManagedApply, so they serialize on the same lock; the box also applies the edit
// before releasing it, so the running list and the file change in the same order.

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/lnm-project/lnm/adminapi"
	"github.com/lnm-project/lnm/allowfile"
	"github.com/lnm-project/lnm/allowlist"
	"github.com/lnm-project/lnm/audit"
	"github.com/lnm-project/lnm/config"
)

// RuleInConfigError answers a removal of a pattern that is written only in the config file,
// which lnm never rewrites.
type RuleInConfigError struct {
	Pattern allowlist.Pattern
	Origins []string // FILE:LINE of each rule with the pattern
}

func (e *RuleInConfigError) Error() string {
	return fmt.Sprintf("rule %s is written in %s; edit that file", e.Pattern, strings.Join(e.Origins, ", "))
}

// ErrRuleNotFound answers a removal of a pattern that no rule has.
var ErrRuleNotFound = errors.New("no rule has this pattern")

// AddManaged adds rules to the managed file of configPath in one edit (all or none), each with
// a note naming uid and the spec's comment. It is what `lnm allow add` does when no box runs.
func AddManaged(configPath string, specs []adminapi.RuleSpec, uid *int) (*config.Config, adminapi.AllowChange, error) {
	return addManaged(configPath, specs, uid, nil)
}

// RemoveManaged removes the managed rules with pattern. When none has it, the error is a
// *RuleInConfigError if the config file has it, else ErrRuleNotFound. It is what `lnm allow
// remove` does when no box runs.
func RemoveManaged(configPath string, pattern allowlist.Pattern) (*config.Config, adminapi.AllowChange, error) {
	return removeManaged(configPath, pattern, nil)
}

func addManaged(configPath string, specs []adminapi.RuleSpec, uid *int, apply func(*config.Config) error) (*config.Config, adminapi.AllowChange, error) {
	ch := adminapi.AllowChange{Managed: allowfile.PathFor(configPath)}
	if len(specs) == 0 {
		return nil, ch, errors.New("no rules to add")
	}
	var keys []string
	next, err := config.EditManagedApply(configPath, func(m *allowfile.File) error {
		for i, s := range specs {
			r, err := s.Rule()
			if err != nil {
				return fmt.Errorf("rule %d: %w", i+1, err)
			}
			if err := m.Add(r, s.Comment, uid); err != nil {
				return err
			}
			keys = append(keys, r.Key())
		}
		return nil
	}, apply)
	if err != nil {
		return nil, ch, err
	}
	for i := range next.Rules {
		r := &next.Rules[i]
		if config.IsManaged(r, configPath) && slices.Contains(keys, r.Key()) {
			ch.Added = append(ch.Added, ruleText(r))
		}
	}
	fillChange(&ch, next, apply != nil)
	return next, ch, nil
}

func removeManaged(configPath string, pattern allowlist.Pattern, apply func(*config.Config) error) (*config.Config, adminapi.AllowChange, error) {
	ch := adminapi.AllowChange{Managed: allowfile.PathFor(configPath)}
	next, err := config.EditManagedApply(configPath, func(m *allowfile.File) error {
		var kept []string
		conf := m.ConfigRules()
		for i := range conf {
			if conf[i].Pattern == pattern {
				kept = append(kept, conf[i].Origin)
				ch.Kept = append(ch.Kept, ruleText(&conf[i]))
			}
		}
		for _, e := range m.Rules() {
			if e.Rule.Pattern == pattern {
				ch.Removed = append(ch.Removed, ruleText(&e.Rule))
			}
		}
		if m.Remove(pattern) > 0 {
			return nil
		}
		if len(kept) > 0 {
			return &RuleInConfigError{Pattern: pattern, Origins: kept}
		}
		return fmt.Errorf("%s: %w", pattern, ErrRuleNotFound)
	}, apply)
	if err != nil {
		return nil, ch, err
	}
	fillChange(&ch, next, apply != nil)
	return next, ch, nil
}

// fillChange completes ch with the list after the change.
func fillChange(ch *adminapi.AllowChange, c *config.Config, applied bool) {
	ch.Rules, ch.Applied = len(c.Rules), applied
	if l, err := c.List(); err == nil {
		ch.Hash = listHash(l)
	}
}

// LoadAllowList reads the config and its managed file as Load does and lists the rules in
// match order with the managed rules' notes, without hits.
func LoadAllowList(configPath string) (adminapi.AllowList, error) {
	c, m, err := config.LoadManaged(configPath)
	if err != nil {
		return adminapi.AllowList{}, err
	}
	return allowListOf(c, m), nil
}

// allowListOf lists c's rules in match order, with the notes of m's rules (m may be nil).
func allowListOf(c *config.Config, m *allowfile.File) adminapi.AllowList {
	mpath := allowfile.PathFor(c.File)
	out := adminapi.AllowList{Config: c.File, Managed: mpath, Rules: []adminapi.AllowRule{}}
	notes := map[string][]string{} // origin + rule → note
	if m != nil {
		for _, e := range m.Rules() {
			notes[ruleText(&e.Rule)] = e.Note
		}
	}
	for _, r := range c.OrderedRules() {
		ar := adminapi.AllowRule{
			Rule: r.String(), Pattern: r.Pattern.String(), Ports: r.Ports, To: r.To.String(),
			Origin: r.Origin, Note: notes[ruleText(r)],
		}
		ar.Managed = config.IsManaged(r, c.File)
		for _, p := range r.From {
			ar.From = append(ar.From, p.String())
		}
		out.Rules = append(out.Rules, ar)
	}
	return out
}

// hit counts the allowed records of one rule.
type hit struct {
	n    uint64
	last time.Time
}

// ruleHits counts, per rule (keyed by its text without origin, which edits of the managed
// file shift), the allowed DNS answers and connections among the records held in memory.
func (rt *Runtime) ruleHits() map[string]hit {
	hits := map[string]hit{}
	for _, r := range rt.store.Query(audit.Filter{Verdict: audit.VerdictAllow}) {
		if r.Rule == "" || (r.Kind == audit.KindConn && r.Event != audit.EventOpen) {
			continue
		}
		if r.Kind != audit.KindDNS && r.Kind != audit.KindConn {
			continue
		}
		key := r.Rule
		if i := strings.LastIndex(key, " ("); i >= 0 && strings.HasSuffix(key, ")") {
			key = key[:i]
		}
		h := hits[key]
		h.n++
		if r.Time.After(h.last) {
			h.last = r.Time
		}
		hits[key] = h
	}
	return hits
}

// allowRoutes registers /v1/allow.
func (a *adminServer) allowRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET "+adminapi.PathAllow, a.allowList)
	mux.HandleFunc("POST "+adminapi.PathAllow, a.allowAdd)
	mux.HandleFunc("DELETE "+adminapi.PathAllow, a.allowRemove)
}

// allowList answers GET /v1/allow: the running rules with hits, and the managed rules' notes
// as the file has them now.
func (a *adminServer) allowList(w http.ResponseWriter, r *http.Request) {
	cfg := a.rt.config()
	m, _ := config.ReadManaged(cfg.File) // notes only: a broken file has none
	out := allowListOf(cfg, m)
	out.Live, out.HitsSince = true, a.rt.store.Oldest()
	hits := a.rt.ruleHits()
	for i := range out.Rules {
		h := hits[out.Rules[i].Rule]
		out.Rules[i].Hits, out.Rules[i].LastHit = h.n, h.last
	}
	writeJSON(w, out)
}

// allowAdd answers POST /v1/allow: validate, write the managed file, apply, all under its
// lock; 422 with the reason when any rule is refused, and then nothing changes.
func (a *adminServer) allowAdd(w http.ResponseWriter, r *http.Request) {
	var req adminapi.AllowAdd
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		apiError(w, http.StatusBadRequest, fmt.Errorf("body: %v", err))
		return
	}
	who, err := callerOf(r)
	if err != nil {
		apiError(w, http.StatusBadRequest, err)
		return
	}
	if who.User != "" {
		for i := range req.Rules {
			req.Rules[i].Comment = strings.TrimSuffix("console user "+who.User+": "+req.Rules[i].Comment, ": ")
		}
	}
	_, ch, err := addManaged(a.rt.config().File, req.Rules, who.UID, func(next *config.Config) error { return a.rt.Reload(next, who) })
	if err != nil {
		a.editError(w, err)
		return
	}
	writeJSON(w, ch)
}

// allowRemove answers DELETE /v1/allow?pattern=P: 409 naming the config file's lines when
// only they have the pattern, 404 when no rule has it.
func (a *adminServer) allowRemove(w http.ResponseWriter, r *http.Request) {
	p, err := allowlist.ParsePattern(r.URL.Query().Get("pattern"))
	if err != nil {
		apiError(w, http.StatusBadRequest, err)
		return
	}
	who, err := callerOf(r)
	if err != nil {
		apiError(w, http.StatusBadRequest, err)
		return
	}
	_, ch, err := removeManaged(a.rt.config().File, p, func(next *config.Config) error { return a.rt.Reload(next, who) })
	if err != nil {
		a.editError(w, err)
		return
	}
	writeJSON(w, ch)
}

func (a *adminServer) editError(w http.ResponseWriter, err error) {
	var inConf *RuleInConfigError
	var io config.IOError
	switch {
	case errors.As(err, &inConf):
		apiError(w, http.StatusConflict, err)
	case errors.Is(err, ErrRuleNotFound):
		apiError(w, http.StatusNotFound, err)
	case errors.As(err, &io):
		apiError(w, http.StatusInternalServerError, err)
	default:
		apiError(w, http.StatusUnprocessableEntity, err)
	}
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}
