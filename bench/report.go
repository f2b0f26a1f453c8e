package main

import (
	"fmt"
	"math"
	"slices"
	"strings"
)

// metric is one measured quantity of a table. With ratio set, the table adds a column of
// the median of per-round ratios against the reference contender.
type metric struct {
	key    string
	title  string
	digits int // decimals printed
	ratio  bool
}

// table collects one part's values by round, contender and metric key; a value never
// recorded is missing (a contender that failed or a metric that does not apply, as the
// proxy CPU of direct).
type table struct {
	title   string
	ref     string // the contender ratios are against
	order   []string
	metrics []metric
	rounds  []map[string]map[string]float64
	notes   []string
}

// record stores v for round r.
func (t *table) record(r int, contender, key string, v float64) {
	for len(t.rounds) <= r {
		t.rounds = append(t.rounds, map[string]map[string]float64{})
	}
	if t.rounds[r][contender] == nil {
		t.rounds[r][contender] = map[string]float64{}
	}
	t.rounds[r][contender][key] = v
	if !slices.Contains(t.order, contender) {
		t.order = append(t.order, contender)
	}
}

// values is the contender's value of key in each round that has one.
func (t *table) values(contender, key string) []float64 {
	var out []float64
	for _, r := range t.rounds {
		if v, ok := r[contender][key]; ok {
			out = append(out, v)
		}
	}
	return out
}

// ratios is value / reference value for each round where both exist.
func (t *table) ratios(contender, key string) []float64 {
	var out []float64
	for _, r := range t.rounds {
		v, ok := r[contender][key]
		ref, rok := r[t.ref][key]
		if ok && rok && ref != 0 {
			out = append(out, v/ref)
		}
	}
	return out
}

// median of vs, NaN when empty.
func median(vs []float64) float64 {
	if len(vs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// markdown renders the table: medians of the values, and medians of the per-round ratios.
func (t *table) markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "### %s\n\n| %s |", t.title, "contender")
	sep := "|---|"
	for _, m := range t.metrics {
		fmt.Fprintf(&b, " %s |", m.title)
		sep += "---:|"
		if m.ratio {
			fmt.Fprintf(&b, " × %s |", t.ref)
			sep += "---:|"
		}
	}
	b.WriteString("\n" + sep + "\n")
	for _, c := range t.order {
		fmt.Fprintf(&b, "| %s |", c)
		for _, m := range t.metrics {
			fmt.Fprintf(&b, " %s |", number(median(t.values(c, m.key)), m.digits))
			if m.ratio {
				fmt.Fprintf(&b, " %s |", number(median(t.ratios(c, m.key)), 2))
			}
		}
		b.WriteString("\n")
	}
	for _, n := range t.notes {
		b.WriteString("\n" + n + "\n")
	}
	return b.String()
}

// number prints v with digits decimals and thousands separators; NaN prints as a dash.
func number(v float64, digits int) string {
	if math.IsNaN(v) {
		return "–"
	}
	s := fmt.Sprintf("%.*f", digits, v)
	intPart, frac, _ := strings.Cut(s, ".")
	neg := strings.HasPrefix(intPart, "-")
	intPart = strings.TrimPrefix(intPart, "-")
	var out []byte
	for i := range len(intPart) {
		if i > 0 && (len(intPart)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, intPart[i])
	}
	res := string(out)
	if frac != "" {
		res += "." + frac
	}
	if neg {
		res = "-" + res
	}
	return res
}

// rotate returns xs starting at element r mod len(xs): round r's order, so every
// contender runs first, in the middle and last as often as the others.
func rotate[T any](xs []T, r int) []T {
	if len(xs) == 0 {
		return nil
	}
	r %= len(xs)
	return append(slices.Clone(xs[r:]), xs[:r]...)
}

// raw lists every recorded value by round, for the record of a run.
func (t *table) raw() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Raw values, %s:\n\n```\n", t.title)
	for r, byC := range t.rounds {
		for _, c := range t.order {
			vals, ok := byC[c]
			if !ok {
				continue
			}
			fmt.Fprintf(&b, "round %d %-9s", r+1, c)
			for _, m := range t.metrics {
				if v, ok := vals[m.key]; ok {
					fmt.Fprintf(&b, " %s=%s", m.key, number(v, m.digits))
				}
			}
			b.WriteString("\n")
		}
	}
	b.WriteString("```\n")
	return b.String()
}
