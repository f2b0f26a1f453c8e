package onboard

// Import turns another tool's allow list into lnm rules: Azure IoT Layered Network
// Management's Lnm custom resource (lnm.go) and dnsmasq's address= and server= lines
// (dnsmasq.go). An import never drops a field silently: what it does not turn into a rule is
// listed in Unmapped with its value and the reason, and what it changed on the way (a
// trailing slash, a repeated entry) is listed in Warnings.

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/lnm-project/lnm/allowlist"
)

// ImportResult is what an import made of a file.
type ImportResult struct {
	// Rules are the rules in the order the file gives them, each once. Origin names the
	// entry: "spec.allowList.domains[3]" (with "document 2: " in front when the file holds
	// several YAML documents), "spec.allowList.enableArcDomains", or "line 12" for dnsmasq.
	Rules []allowlist.Rule
	// Unmapped lists every field or line that made no rule, as "WHERE: VALUE (line N): WHY".
	Unmapped []string
	// Warnings lists entries imported with a change or a caveat.
	Warnings []string
}

// SetFile puts "FILE: " in front of every rule's Origin.
func (r *ImportResult) SetFile(name string) {
	for i := range r.Rules {
		r.Rules[i].Origin = name + ": " + r.Rules[i].Origin
	}
}

// Import formats.
const (
	FormatLnm     = "lnm"
	FormatDnsmasq = "dnsmasq"
)

// Import reads data in format (FormatLnm, FormatDnsmasq, or "" to tell by content with
// DetectImportFormat).
func Import(data []byte, format string) (ImportResult, error) {
	if format == "" {
		format = DetectImportFormat(data)
		if format == "" {
			return ImportResult{}, errors.New("onboard: import: neither an Lnm custom resource (no apiVersion/kind) nor a dnsmasq file (no address= or server= line); name the format")
		}
	}
	switch format {
	case FormatLnm:
		return ImportLnm(data)
	case FormatDnsmasq:
		return ImportDnsmasq(data)
	}
	return ImportResult{}, fmt.Errorf("onboard: import: unknown format %q (want %s or %s)", format, FormatLnm, FormatDnsmasq)
}

// DetectImportFormat tells the format by content: FormatLnm for YAML with a top-level
// apiVersion or kind, FormatDnsmasq for a file with address= or server= lines, else "".
func DetectImportFormat(data []byte) string {
	dnsmasq := false
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "apiVersion:") || strings.HasPrefix(line, "kind:") {
			return FormatLnm
		}
		s := strings.TrimSpace(line)
		if strings.HasPrefix(s, "address=") || strings.HasPrefix(s, "server=") {
			dnsmasq = true
		}
	}
	if dnsmasq {
		return FormatDnsmasq
	}
	return ""
}

// importer collects one file's result.
type importer struct {
	res   ImportResult
	doc   string            // "document N: " in multi-document files
	seen  map[string]string // rule key → origin of the first rule saying it
	ports map[uint16][]string
}

// add appends a rule unless one saying the same thing is there; it reports whether it did.
func (im *importer) add(r allowlist.Rule, warnDup bool) bool {
	key := r.Key()
	if first, ok := im.seen[key]; ok {
		if warnDup {
			im.warn("%s: %q repeats %s; imported once", r.Origin, r.String(), first)
		}
		return false
	}
	im.seen[key] = r.Origin
	im.res.Rules = append(im.res.Rules, r)
	for _, p := range r.Ports {
		if im.ports == nil {
			im.ports = map[uint16][]string{}
		}
		im.ports[p] = append(im.ports[p], r.Origin)
	}
	return true
}

// portNotes says once per port that rules with ports need the box to listen there.
func (im *importer) portNotes() {
	for _, p := range slices.Sorted(maps.Keys(im.ports)) {
		origins := im.ports[p]
		im.warn("port %d: the box must listen on it (`proxy %d` in lnm.conf) for the rules from %s", p, p, strings.Join(origins, ", "))
	}
}

func (im *importer) warn(format string, args ...any) {
	im.res.Warnings = append(im.res.Warnings, fmt.Sprintf(format, args...))
}

func (im *importer) unmapped(path string, v *yaml.Node, line int, why string) {
	im.res.Unmapped = append(im.res.Unmapped, fmt.Sprintf("%s%s: %s (line %d): %s", im.doc, path, compact(v), line, why))
}

func (im *importer) errorf(path string, line int, format string, args ...any) error {
	return fmt.Errorf("onboard: import: %s%s (line %d): %s", im.doc, path, line, fmt.Sprintf(format, args...))
}
