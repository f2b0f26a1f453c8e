package onboard

// Presets are the endpoint lists Microsoft documents for Azure Arc and Azure IoT Operations
// behind Layered Network Management, as rules ready to add (`lnm allow add --preset NAME`).
//
// The lists are copied from Microsoft's Dec 2024 documentation of the product (its endpoint
// lists for Arc and for Azure IoT Operations). The dnsmasq form of that list writes ".x", but dnsmasq cannot say "below x only";
// the Lnm custom resource of the same date writes the same entries as "*.x", which is what
// LNM's Envoy matched. We keep the narrower "*.x": nothing in the lists needs x itself.

import (
	"fmt"
	"slices"
	"strings"

	"github.com/lnm-project/lnm/allowlist"
)

// PresetInfo describes one preset.
type PresetInfo struct {
	Name        string
	Description string
	Patterns    []string // in the documented order, each as ParsePattern reads it
}

// arcEndpoints are the Arc-enabled Kubernetes endpoints: "# Arc endpoints" of the Dec 2024
// dnsmasq list, which is also the first 19 entries of the Dec 2024 Lnm CR.
// ImportLnm adds them for `enableArcDomains: true`, whose real set Microsoft never published.
var arcEndpoints = []string{
	"management.azure.com",
	"*.dp.kubernetesconfiguration.azure.com",
	"login.microsoftonline.com",
	"*.login.microsoft.com",
	"login.windows.net",
	"mcr.microsoft.com",
	"*.data.mcr.microsoft.com",
	"gbl.his.arc.azure.com",
	"*.his.arc.azure.com",
	"k8connecthelm.azureedge.net",
	"guestnotificationservice.azure.com",
	"*.guestnotificationservice.azure.com",
	"sts.windows.net",
	"k8sconnectcsp.azureedge.net",
	"*.servicebus.windows.net",
	"graph.microsoft.com",
	"*.arc.azure.net",
	"*.obo.arc.azure.com",
	"linuxgeneva-microsoft.azurecr.io",
}

// aioEndpoints are what "Azure IoT Operations endpoints" asks for beyond Arc: four entries of
// the Azure CLI list and the schema registry's storage (the documentation's "AIO endpoints").
// <customer-specific>.blob.storage.azure.net is written as the wildcard the CR uses.
var aioEndpoints = []string{
	"graph.windows.net",
	"*.azurecr.io",
	"*.blob.core.windows.net",
	"*.vault.azure.net",
	"*.blob.storage.azure.net",
}

var presets = []PresetInfo{
	{
		Name:        "azure-arc",
		Description: "Azure Arc-enabled Kubernetes endpoints (Microsoft's Dec 2024 list)",
		Patterns:    arcEndpoints,
	},
	{
		Name:        "azure-iot-operations",
		Description: "Azure IoT Operations: the Arc endpoints, plus graph.windows.net, container registries, key vaults and blob storage",
		Patterns:    slices.Concat(arcEndpoints, aioEndpoints),
	},
}

// Presets returns every preset, sorted by name. Callers must not modify them.
func Presets() []PresetInfo { return presets }

// UnknownPresetError names a preset that does not exist and the ones that do. Its text has no
// package prefix: it answers the user's own word.
type UnknownPresetError struct {
	Name string
	Have []string
}

func (e *UnknownPresetError) Error() string {
	return fmt.Sprintf("no preset %q (have %s)", e.Name, strings.Join(e.Have, ", "))
}

// Preset returns a preset's rules, with any port and any source, Origin "preset NAME". An
// unknown name is an *UnknownPresetError.
func Preset(name string) ([]allowlist.Rule, error) {
	for _, p := range presets {
		if p.Name == name {
			return presetRules(p), nil
		}
	}
	names := make([]string, len(presets))
	for i, p := range presets {
		names[i] = p.Name
	}
	return nil, &UnknownPresetError{Name: name, Have: names}
}

func presetRules(p PresetInfo) []allowlist.Rule {
	rules := make([]allowlist.Rule, len(p.Patterns))
	for i, s := range p.Patterns {
		pat, err := allowlist.ParsePattern(s)
		if err != nil {
			panic("onboard: preset " + p.Name + ": " + err.Error()) // TestPresetsParse
		}
		rules[i] = allowlist.Rule{Pattern: pat, Origin: "preset " + p.Name}
	}
	return rules
}
