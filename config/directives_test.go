package config

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestDirectiveTable: every entry is complete, names are unique, and the README's directive
// table documents each one, so a directive cannot be added without its documentation.
func TestDirectiveTable(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	row := regexp.MustCompile(`(?m)^\| (.*?) \|`)
	word := regexp.MustCompile("`([a-z_0-9]+)")
	for _, m := range row.FindAllStringSubmatch(string(readme), -1) {
		for _, w := range word.FindAllStringSubmatch(m[1], -1) {
			documented[w[1]] = true
		}
	}
	seen := map[string]bool{}
	for _, d := range directives {
		if d.parse == nil || d.summary == nil || d.value == nil {
			t.Errorf("directive %s lacks a parser, a summary or a value", d.name)
		}
		if seen[d.name] {
			t.Errorf("directive %s is in the table twice", d.name)
		}
		seen[d.name] = true
		if !documented[d.name] {
			t.Errorf("directive %s is not in README.md's directive table", d.name)
		}
	}
}

// TestChanged: each directive's change is seen by its name, and RestartOnly keeps the ones a
// reload cannot apply.
func TestChanged(t *testing.T) {
	parse := func(body string) *Config {
		t.Helper()
		c, err := Parse("lnm.conf", strings.NewReader("lnm {\n    listen 127.0.0.1\n    allow {\n        a.test\n    }\n"+body+"}\n"))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	base := parse("")
	if got := Changed(base, parse("")); len(got) != 0 {
		t.Fatalf("same text: changed %v", got)
	}
	for _, tc := range []struct {
		body    string
		changed []string
		restart []string
	}{
		{"    allow {\n        b.test\n    }\n", []string{"allow"}, nil},
		{"    ttl 30s\n", []string{"ttl"}, nil},
		{"    dns 5353\n", []string{"dns"}, []string{"dns"}},
		{"    fsync always\n    store_max 10\n", []string{"fsync", "store_max"}, []string{"fsync", "store_max"}},
		{"    mode learn\n    idle_timeout 2h\n", []string{"idle_timeout", "mode"}, nil},
		{"    tcp 1883 127.0.0.9:1883\n    level 3\n", []string{"level", "tcp"}, []string{"level"}},
	} {
		got := Changed(base, parse(tc.body))
		if !slices.Equal(got, tc.changed) {
			t.Errorf("%q: changed %v, want %v", tc.body, got, tc.changed)
		}
		if r := RestartOnly(got); !slices.Equal(r, tc.restart) {
			t.Errorf("%q: restart-only %v, want %v", tc.body, r, tc.restart)
		}
	}
}
