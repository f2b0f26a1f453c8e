package adminapi

import (
	"fmt"
	"strconv"
	"time"

	"github.com/lnm-project/lnm/allowlist"
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
	Private bool     `json:"private,omitempty"` // the name may resolve inside the plant
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

// Rule checks a RuleSpec with the allow-line grammar, as if written PATTERN PORTS from FROM
// to TO, and puts ports and sources in canonical order. Errors start with the pattern.
func (s RuleSpec) Rule() (allowlist.Rule, error) {
	words := make([]string, 0, len(s.Ports)+len(s.From)+3)
	for _, p := range s.Ports {
		words = append(words, strconv.Itoa(p))
	}
	if len(s.From) > 0 {
		words = append(append(words, "from"), s.From...)
	}
	if s.To != "" {
		words = append(words, "to", s.To)
	}
	if s.Private {
		words = append(words, "private")
	}
	r, err := allowlist.ParseRule(s.Pattern, words)
	if err != nil {
		if r.Pattern.Base == "" { // the pattern itself: the error names it
			return r, err
		}
		return r, fmt.Errorf("%s: %w", s.Pattern, err)
	}
	return r, nil
}

// SpecOf is the RuleSpec that adds r with comment.
func SpecOf(r allowlist.Rule, comment string) RuleSpec {
	s := RuleSpec{Pattern: r.Pattern.String(), To: r.To.String(), Private: r.Private, Comment: comment}
	for _, p := range r.Ports {
		s.Ports = append(s.Ports, int(p))
	}
	for _, p := range r.From {
		s.From = append(s.From, p.String())
	}
	return s
}
