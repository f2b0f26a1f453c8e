package onboard

// Helpers for walking yaml.v3 node trees with their line numbers.

import (
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

func deref(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	n = deref(n)
	return n == nil || n.Kind == 0 || (n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null")
}

// pairs yields a mapping's keys and values in file order.
func pairs(m *yaml.Node) func(func(k, v *yaml.Node) bool) {
	return func(yield func(k, v *yaml.Node) bool) {
		for i := 0; i+1 < len(m.Content); i += 2 {
			if !yield(deref(m.Content[i]), deref(m.Content[i+1])) {
				return
			}
		}
	}
}

func field(m *yaml.Node, key string) *yaml.Node {
	m = deref(m)
	if m == nil || m.Kind != yaml.MappingNode {
		return nil
	}
	for k, v := range pairs(m) {
		if k.Value == key {
			return v
		}
	}
	return nil
}

func scalarField(m *yaml.Node, key string) string { return scalar(field(m, key)) }

func scalar(n *yaml.Node) string {
	n = deref(n)
	if n == nil || n.Kind != yaml.ScalarNode || isNull(n) {
		return ""
	}
	return n.Value
}

// compact renders a value on one line: a scalar as written, anything else in flow style.
func compact(n *yaml.Node) string {
	n = deref(n)
	switch {
	case n == nil || isNull(n):
		return "null"
	case n.Kind == yaml.ScalarNode:
		if strings.ContainsFunc(n.Value, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			return strconv.Quote(n.Value)
		}
		return n.Value
	}
	out, err := yaml.Marshal(flow(n))
	if len(out) > 512 {
		out = append(out[:500:500], " …"...)
	}
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(out))
}

// flow copies a node tree in flow style without comments.
func flow(n *yaml.Node) *yaml.Node {
	if n.Kind == yaml.AliasNode {
		// Written as the alias: expanding it could blow up (a billion laughs).
		return &yaml.Node{Kind: yaml.ScalarNode, Value: "*" + n.Value}
	}
	c := *n
	c.Style &^= yaml.LiteralStyle | yaml.FoldedStyle
	if c.Kind != yaml.ScalarNode {
		c.Style |= yaml.FlowStyle
	}
	c.HeadComment, c.LineComment, c.FootComment = "", "", ""
	c.Content = make([]*yaml.Node, len(n.Content))
	for i, k := range n.Content {
		c.Content[i] = flow(k)
	}
	return &c
}
