package onboard

import (
	"slices"
	"strings"
	"testing"

	"github.com/lnm-project/lnm/allowlist"
)

// TestPresetsParse: every preset pattern parses, prints back as written, and the preset
// makes a list without duplicates.
func TestPresetsParse(t *testing.T) {
	seen := map[string]bool{}
	for _, p := range Presets() {
		t.Run(p.Name, func(t *testing.T) {
			if seen[p.Name] {
				t.Fatalf("preset %s twice", p.Name)
			}
			seen[p.Name] = true
			if p.Description == "" || len(p.Patterns) == 0 {
				t.Fatalf("preset %s has no description or no patterns", p.Name)
			}
			for _, s := range p.Patterns {
				pat, err := allowlist.ParsePattern(s)
				if err != nil {
					t.Errorf("pattern %q: %v", s, err)
					continue
				}
				if pat.String() != s {
					t.Errorf("pattern %q reads back as %q", s, pat)
				}
			}
			rules, err := Preset(p.Name)
			if err != nil {
				t.Fatal(err)
			}
			if len(rules) != len(p.Patterns) {
				t.Fatalf("%d rules for %d patterns", len(rules), len(p.Patterns))
			}
			if _, err := allowlist.New(rules); err != nil {
				t.Fatal(err)
			}
			for _, r := range rules {
				if r.Origin != "preset "+p.Name || len(r.Ports) > 0 || len(r.From) > 0 || !r.To.IsZero() {
					t.Errorf("rule %q (%s): want any port, any source, origin %q", r.String(), r.Origin, "preset "+p.Name)
				}
			}
		})
	}
	if !slices.IsSortedFunc(Presets(), func(a, b PresetInfo) int { return strings.Compare(a.Name, b.Name) }) {
		t.Error("presets are not sorted by name")
	}
}

// TestPresetAIOHasArc: Azure IoT Operations runs on Arc, so its preset holds every Arc
// endpoint, and the S22 extras.
func TestPresetAIOHasArc(t *testing.T) {
	arc, _ := Preset("azure-arc")
	aio, _ := Preset("azure-iot-operations")
	have := map[string]bool{}
	for _, r := range aio {
		have[r.Pattern.String()] = true
	}
	for _, r := range arc {
		if !have[r.Pattern.String()] {
			t.Errorf("azure-iot-operations lacks the Arc endpoint %s", r.Pattern)
		}
	}
	for _, s := range []string{"graph.windows.net", "*.azurecr.io", "*.blob.core.windows.net", "*.vault.azure.net", "*.blob.storage.azure.net"} {
		if !have[s] {
			t.Errorf("azure-iot-operations lacks %s", s)
		}
	}
}

func TestPresetUnknown(t *testing.T) {
	_, err := Preset("azure")
	const want = `no preset "azure" (have azure-arc, azure-iot-operations)`
	if err == nil || err.Error() != want {
		t.Errorf("error %v, want %s", err, want)
	}
}
