package appliance

// The allow-list operations of the admin API (GET, POST and DELETE /v1/allow, see adminapi.go)
// and the functions the CLI calls when no box is running. Both paths edit the managed file
// through editManaged, so they serialize on the same lock; the box also applies the edit
// before releasing it, so the running list and the file change in the same order.

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/lnm-project/lnm/allowlist"
	"github.com/lnm-project/lnm/audit"
)

// AllowList is the body of GET /v1/allow, and what `lnm allow list --json` prints.
type AllowList struct {
	Config  string `json:"config"`
	Managed string `json:"managed"` // the managed rules file
	// Live is true when the list came from the running box, with hits; false when it was read
	// from the files, without them.
	Live bool `json:"live"`
	// HitsSince is the time of the oldest record the box holds in memory: hits count allowed
	// DNS answers and connections from then on. Zero when not Live or nothing is held.
	HitsSince time.Time   `json:"hits_since,omitzero"`
	Rules     []AllowRule `json:"rules"` // in match order
}

// AllowRule is one rule of an AllowList.
type AllowRule struct {
	Rule    string   `json:"rule"` // in config syntax
	Pattern string   `json:"pattern"`
	Ports   []uint16 `json:"ports,omitempty"`
	From    []string `json:"from,omitempty"`
	To      string   `json:"to,omitempty"`
	Origin  string   `json:"origin"` // FILE:LINE
	Managed bool     `json:"managed"`
	// Note is the comment written above a managed rule ("added by uid 1000 at …: why").
	Note    []string  `json:"note,omitempty"`
	Hits    uint64    `json:"hits"`
	LastHit time.Time `json:"last_hit,omitzero"`
}

// RuleSpec is one rule to add, as the POST /v1/allow body and the CLI's flags give it.
type RuleSpec struct {
	Pattern string   `json:"pattern"`
	Ports   []int    `json:"ports,omitempty"`
	From    []string `json:"from,omitempty"`    // CIDRs or addresses
	To      string   `json:"to,omitempty"`      // HOST:PORT
	Comment string   `json:"comment,omitempty"` // written in the rule's note
}

// AllowAdd is the body of POST /v1/allow.
type AllowAdd struct {
	Rules []RuleSpec `json:"rules"`
}

// AllowChange is the answer to POST and DELETE /v1/allow, and what the CLI reports after
// editing the file itself.
type AllowChange struct {
	Managed string   `json:"managed"`           // the file written
	Added   []string `json:"added,omitempty"`   // rules added, "RULE (FILE:LINE)"
	Removed []string `json:"removed,omitempty"` // rules removed, as they were written
	// Kept lists rules with the removed pattern that are written in the config file and stay.
	Kept  []string `json:"kept,omitempty"`
	Rules int      `json:"rules"` // rules in the list afterwards
	Hash  string   `json:"hash"`  // the list's hash afterwards
	// Applied is true when the running box applied the change.
	Applied bool `json:"applied"`
}

// Rule checks a RuleSpec as the parser checks an allow line, and puts ports and sources in
// canonical order.
func (s RuleSpec) Rule() (allowlist.Rule, error) {
	var r allowlist.Rule
	var err error
	if r.Pattern, err = allowlist.ParsePattern(s.Pattern); err != nil {
		return r, errors.New(plain(err))
	}
	for _, p := range s.Ports {
		if p < 1 || p > 65535 {
			return r, fmt.Errorf("%s: port %d: want a number from 1 to 65535", s.Pattern, p)
		}
		if slices.Contains(r.Ports, uint16(p)) {
			return r, fmt.Errorf("%s: port %d given twice", s.Pattern, p)
		}
		r.Ports = append(r.Ports, uint16(p))
	}
	for _, f := range s.From {
		pf, err := parsePrefix(f)
		if err != nil {
			return r, fmt.Errorf("%s: from: %v", s.Pattern, err)
		}
		if slices.Contains(r.From, pf) {
			return r, fmt.Errorf("%s: from: %s given twice", s.Pattern, pf)
		}
		r.From = append(r.From, pf)
	}
	if s.To != "" {
		if r.To, err = allowlist.ParseTarget(s.To); err != nil {
			return r, fmt.Errorf("%s: to: %s", s.Pattern, plain(err))
		}
	}
	slices.Sort(r.Ports) // canonical, as the parser leaves them
	slices.SortFunc(r.From, netip.Prefix.Compare)
	return r, nil
}

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

// ioError marks a failure to lock, read or write the files, as opposed to an edit refused
// for what it says.
type ioError struct{ error }

func (e ioError) Unwrap() error { return e.error }

// unprefixed drops the package prefix of an error that a caller shows inside its own.
type unprefixed struct{ error }

func (e unprefixed) Error() string { return strings.TrimPrefix(e.error.Error(), "appliance: ") }
func (e unprefixed) Unwrap() error { return e.error }

// AddManaged adds rules to the managed file of configPath in one edit (all or none), each with
// a note naming uid and the spec's comment. It is what `lnm allow add` does when no box runs.
func AddManaged(configPath string, specs []RuleSpec, uid *int) (*Config, AllowChange, error) {
	return addManaged(configPath, specs, uid, nil)
}

// RemoveManaged removes the managed rules with pattern. When none has it, the error is a
// *RuleInConfigError if the config file has it, else ErrRuleNotFound. It is what `lnm allow
// remove` does when no box runs.
func RemoveManaged(configPath string, pattern allowlist.Pattern) (*Config, AllowChange, error) {
	return removeManaged(configPath, pattern, nil)
}

func addManaged(configPath string, specs []RuleSpec, uid *int, apply func(*Config) error) (*Config, AllowChange, error) {
	ch := AllowChange{Managed: ManagedPath(configPath)}
	if len(specs) == 0 {
		return nil, ch, errors.New("no rules to add")
	}
	var keys []string
	next, err := editManaged(configPath, func(m *Managed) error {
		for i, s := range specs {
			r, err := s.Rule()
			if err != nil {
				return fmt.Errorf("rule %d: %w", i+1, err)
			}
			if err := m.Add(r, s.Comment, uid); err != nil {
				return unprefixed{err}
			}
			keys = append(keys, ruleKey(&m.entries[len(m.entries)-1].Rule))
		}
		return nil
	}, apply)
	if err != nil {
		return nil, ch, err
	}
	mpath := ManagedPath(configPath)
	for i := range next.Rules {
		r := &next.Rules[i]
		if file, _ := splitOrigin(r.Origin, ""); file == mpath && slices.Contains(keys, ruleKey(r)) {
			ch.Added = append(ch.Added, ruleText(r))
		}
	}
	ch.fill(next, apply != nil)
	return next, ch, nil
}

func removeManaged(configPath string, pattern allowlist.Pattern, apply func(*Config) error) (*Config, AllowChange, error) {
	ch := AllowChange{Managed: ManagedPath(configPath)}
	next, err := editManaged(configPath, func(m *Managed) error {
		var kept []string
		for i := range m.conf {
			if m.conf[i].Pattern == pattern {
				kept = append(kept, m.conf[i].Origin)
				ch.Kept = append(ch.Kept, ruleText(&m.conf[i]))
			}
		}
		for _, e := range m.entries {
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
	ch.fill(next, apply != nil)
	return next, ch, nil
}

func (ch *AllowChange) fill(c *Config, applied bool) {
	ch.Rules, ch.Applied = len(c.Rules), applied
	if l, err := c.List(); err == nil {
		ch.Hash = listHash(l)
	}
}

// LoadAllowList reads the config and its managed file as Load does and lists the rules in
// match order with the managed rules' notes, without hits.
func LoadAllowList(configPath string) (AllowList, error) {
	conf, err := readConfigFile(configPath)
	if err != nil {
		return AllowList{}, err
	}
	managed, err := readManaged(ManagedPath(configPath))
	if err != nil {
		return AllowList{}, err
	}
	c, m, err := loadData(configPath, conf, managed)
	if err != nil {
		return AllowList{}, err
	}
	return allowListOf(c, m), nil
}

// allowListOf lists c's rules in match order, with the notes of m's rules (m may be nil).
func allowListOf(c *Config, m *Managed) AllowList {
	mpath := ManagedPath(c.File)
	out := AllowList{Config: c.File, Managed: mpath, Rules: []AllowRule{}}
	notes := map[string][]string{} // origin + rule → note
	if m != nil {
		for _, e := range m.entries {
			notes[ruleText(&e.Rule)] = e.Note
		}
	}
	for _, r := range c.orderedRules() {
		ar := AllowRule{
			Rule: r.String(), Pattern: r.Pattern.String(), Ports: r.Ports, To: r.To.String(),
			Origin: r.Origin, Note: notes[ruleText(r)],
		}
		file, _ := splitOrigin(r.Origin, "")
		ar.Managed = file == mpath
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
	mux.HandleFunc("GET "+PathAllow, a.allowList)
	mux.HandleFunc("POST "+PathAllow, a.allowAdd)
	mux.HandleFunc("DELETE "+PathAllow, a.allowRemove)
}

// allowList answers GET /v1/allow: the running rules with hits, and the managed rules' notes
// as the file has them now.
func (a *adminServer) allowList(w http.ResponseWriter, r *http.Request) {
	cfg := a.rt.config()
	var m *Managed
	if data, err := readManaged(ManagedPath(cfg.File)); err == nil && data != nil {
		m, _ = parseManaged(ManagedPath(cfg.File), data)
	}
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
	var req AllowAdd
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		apiError(w, http.StatusBadRequest, fmt.Errorf("body: %v", err))
		return
	}
	uid := PeerUID(r.Context())
	_, ch, err := addManaged(a.rt.config().File, req.Rules, uid, func(next *Config) error { return a.rt.Reload(next, uid) })
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
		apiError(w, http.StatusBadRequest, errors.New(plain(err)))
		return
	}
	uid := PeerUID(r.Context())
	_, ch, err := removeManaged(a.rt.config().File, p, func(next *Config) error { return a.rt.Reload(next, uid) })
	if err != nil {
		a.editError(w, err)
		return
	}
	writeJSON(w, ch)
}

func (a *adminServer) editError(w http.ResponseWriter, err error) {
	var inConf *RuleInConfigError
	var io ioError
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
