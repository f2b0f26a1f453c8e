package onboard

// The Lnm custom resource of Azure IoT Layered Network Management (v1beta1 Lnm, and the older
// az-edge.com/v1 E4in and aio.com/v1 Lnm), as its Dec 2024 documentation describes it.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/net/publicsuffix"
	"gopkg.in/yaml.v3"

	"github.com/lnm-project/lnm/allowlist"
)

// lnmKinds are the custom resource identities LNM has had.
var lnmKinds = []struct{ apiVersion, kind string }{
	{"layerednetworkmgmt.iotoperations.azure.com/v1beta1", "Lnm"},
	{"az-edge.com/v1", "E4in"}, // Oct 2023, before the rename
	{"aio.com/v1", "Lnm"},      // the az iot ops CLI's test fixture
}

const lnmGroup = "layerednetworkmgmt.iotoperations.azure.com/"

// lnmUnmapped says why each spec field of the custom resource makes no rule.
var lnmUnmapped = map[string]string{
	"image":                             "lnm is one program, not an Envoy container: there is no proxy image to pull",
	"replicas":                          "a box is one proxy; for redundancy run a second box",
	"logLevel":                          "lnm's log level is `lnm --log-level LEVEL run`",
	"openTelemetryMetricsCollectorAddr": "lnm serves Prometheus metrics (`metrics ADDR` in lnm.conf), it does not push OTLP",
	"level":                             "the box's level is `level N` in lnm.conf; import writes rules only",
	"parentIpAddr":                      "the parent box is `parent ADDR` in lnm.conf; import writes rules only",
	"parentPort":                        "lnm dials the parent on the port the device connected to (`proxy LISTEN:UPSTREAM` in lnm.conf maps it)",
	"port":                              "undocumented in LNM; the box's ports are `proxy PORT...` in lnm.conf",
	"endpointType":                      "undocumented in LNM; lnm routes by SNI on every proxy port",
	"nodeTolerations":                   "Kubernetes pod scheduling; the box is not a pod",
}

// ImportLnm reads an Lnm custom resource (layerednetworkmgmt.iotoperations.azure.com/v1beta1
// Lnm, and the older az-edge.com/v1 E4in and aio.com/v1 Lnm), possibly several YAML documents
// in one file. Each external destinationUrl becomes a pattern ("*.x" stays "*.x", a host is
// exact); each internal "host:port" a rule "host PORT"; `enableArcDomains: true` adds the
// documented Arc endpoints (Presets' azure-arc); sourceIpRange becomes every rule's from.
// Documents of other kinds are listed as unmapped. An entry that cannot be a rule is an
// error naming it.
func ImportLnm(data []byte) (ImportResult, error) {
	var docs []*yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var n yaml.Node
		err := dec.Decode(&n)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return ImportResult{}, fmt.Errorf("onboard: import: %w", err)
		}
		if len(n.Content) == 0 || isNull(n.Content[0]) {
			continue // an empty document, as after a final ---
		}
		docs = append(docs, n.Content[0])
	}
	im := importer{seen: map[string]string{}}
	found := false
	for i, doc := range docs {
		im.doc = ""
		if len(docs) > 1 {
			im.doc = "document " + strconv.Itoa(i+1) + ": "
		}
		ok, err := im.lnmDocument(doc)
		if err != nil {
			return ImportResult{}, err
		}
		found = found || ok
	}
	if !found {
		return ImportResult{}, errors.New("onboard: import: no Lnm custom resource in the file (want apiVersion " + lnmKinds[0].apiVersion + ", kind Lnm)")
	}
	im.portNotes()
	return im.res, nil
}

// lnmDocument imports one YAML document; it reports whether the document was an Lnm.
func (im *importer) lnmDocument(doc *yaml.Node) (bool, error) {
	doc = deref(doc)
	if doc.Kind != yaml.MappingNode {
		im.unmapped("document", doc, doc.Line, "not a Kubernetes object")
		return false, nil
	}
	apiVersion, kind := scalarField(doc, "apiVersion"), scalarField(doc, "kind")
	known := slices.ContainsFunc(lnmKinds, func(k struct{ apiVersion, kind string }) bool {
		return k.apiVersion == apiVersion && k.kind == kind
	})
	if !known && strings.HasPrefix(apiVersion, lnmGroup) && kind == "Lnm" {
		im.warn("%sapiVersion %s (line %d): read as %s", im.doc, apiVersion, doc.Line, lnmKinds[0].apiVersion)
		known = true
	}
	if !known {
		name := scalarField(field(doc, "metadata"), "name")
		im.res.Unmapped = append(im.res.Unmapped, fmt.Sprintf("%s%s %s %s (line %d): not an Lnm custom resource", im.doc, apiVersion, kind, name, doc.Line))
		return false, nil
	}
	for k, v := range pairs(doc) {
		switch k.Value {
		case "apiVersion", "kind":
		case "metadata":
			im.res.Unmapped = append(im.res.Unmapped, fmt.Sprintf("%smetadata: %s (line %d): Kubernetes object metadata; the box has no objects", im.doc, metadataSummary(v), k.Line))
		case "status":
			im.unmapped("status", v, k.Line, "written by the LNM operator, not configuration")
		case "spec":
			if err := im.spec(v); err != nil {
				return true, err
			}
		default:
			im.unmapped(k.Value, v, k.Line, "unknown field")
		}
	}
	return true, nil
}

func (im *importer) spec(spec *yaml.Node) error {
	if isNull(spec) {
		return nil
	}
	if spec.Kind != yaml.MappingNode {
		return im.errorf("spec", spec.Line, "want a mapping, got %s", compact(spec))
	}
	for k, v := range pairs(spec) {
		path := "spec." + k.Value
		if k.Value == "allowList" {
			if err := im.allowList(v); err != nil {
				return err
			}
			continue
		}
		why, ok := lnmUnmapped[k.Value]
		if !ok {
			why = "unknown field"
		}
		im.unmapped(path, v, k.Line, why)
	}
	return nil
}

// allowList imports spec.allowList: sources first, since they apply to every rule, then the
// domains in order, then the Arc endpoints that the domains did not already list.
func (im *importer) allowList(al *yaml.Node) error {
	const path = "spec.allowList"
	if isNull(al) {
		return nil
	}
	if al.Kind != yaml.MappingNode {
		return im.errorf(path, al.Line, "want a mapping, got %s", compact(al))
	}
	var from []netip.Prefix
	var domains, arc *yaml.Node
	var arcLine int
	for k, v := range pairs(al) {
		switch k.Value {
		case "sourceIpRange":
			var err error
			if from, err = im.sources(v, k.Line); err != nil {
				return err
			}
		case "domains":
			domains = v
		case "enableArcDomains":
			arc, arcLine = v, k.Line
		default:
			im.unmapped(path+"."+k.Value, v, k.Line, "unknown field")
		}
	}
	if domains != nil && !isNull(domains) {
		if domains.Kind != yaml.SequenceNode {
			return im.errorf(path+".domains", domains.Line, "want a list, got %s", compact(domains))
		}
		for i, d := range domains.Content {
			if err := im.domain(fmt.Sprintf("%s.domains[%d]", path, i), deref(d), from); err != nil {
				return err
			}
		}
	}
	if arc != nil && !isNull(arc) {
		var on bool
		if err := arc.Decode(&on); err != nil || arc.Kind != yaml.ScalarNode {
			return im.errorf(path+".enableArcDomains", arcLine, "want true or false, got %s", compact(arc))
		}
		if on {
			origin := im.doc + path + ".enableArcDomains"
			added := 0
			for _, r := range presetRules(presets[0]) {
				r.From, r.Origin = from, origin
				if im.add(r, false) {
					added++
				}
			}
			im.warn("%s (line %d): Microsoft never published the set it adds; the %d documented Arc endpoints (Dec 2024) stand for it: %d added, %d already in domains", origin, arcLine, len(arcEndpoints), added, len(arcEndpoints)-added)
		}
	}
	return nil
}

// sources reads sourceIpRange: a list of {addressPrefix, prefixLen}. A range covering
// everything (prefixLen 0) means no from at all.
func (im *importer) sources(v *yaml.Node, line int) ([]netip.Prefix, error) {
	path := "spec.allowList.sourceIpRange"
	v = deref(v)
	switch {
	case isNull(v):
		return nil, nil
	case v.Kind == yaml.ScalarNode:
		// The az iot ops CLI's fixture types it as a string; read a CIDR if there is one.
		if v.Value == "" {
			return nil, nil
		}
		p, err := allowlist.ParsePrefix(v.Value)
		if err != nil {
			return nil, im.errorf(path, line, "%q: %v", v.Value, err)
		}
		return im.everySource([]netip.Prefix{p}, path, line), nil
	case v.Kind != yaml.SequenceNode:
		return nil, im.errorf(path, line, "want a list of {addressPrefix, prefixLen}, got %s", compact(v))
	}
	var out []netip.Prefix
	for i, e := range v.Content {
		e = deref(e)
		where := fmt.Sprintf("%s[%d]", path, i)
		if e.Kind != yaml.MappingNode {
			return nil, im.errorf(where, e.Line, "want {addressPrefix, prefixLen}, got %s", compact(e))
		}
		var addrText, lenText string
		lenLine := e.Line
		for k, f := range pairs(e) {
			switch k.Value {
			case "addressPrefix":
				addrText = scalar(f)
			case "prefixLen":
				lenText, lenLine = scalar(f), k.Line
			default:
				im.unmapped(where+"."+k.Value, f, k.Line, "unknown field")
			}
		}
		a, err := netip.ParseAddr(addrText)
		if err != nil {
			return nil, im.errorf(where, e.Line, "addressPrefix %q is not an IP address", addrText)
		}
		bits, err := strconv.Atoi(lenText)
		if err != nil || bits < 0 || bits > a.BitLen() {
			return nil, im.errorf(where, lenLine, "prefixLen %q: want 0 to %d", lenText, a.BitLen())
		}
		p := netip.PrefixFrom(a.Unmap(), bits)
		if m := p.Masked(); m != p {
			im.warn("%s%s (line %d): %s has host bits set; imported as %s", im.doc, where, e.Line, p, m)
			p = m
		}
		if slices.Contains(out, p) {
			im.warn("%s%s (line %d): %s repeats; imported once", im.doc, where, e.Line, p)
			continue
		}
		out = append(out, p)
	}
	return im.everySource(out, path, line), nil
}

// everySource turns a list that holds a /0 into no from, saying so.
func (im *importer) everySource(ps []netip.Prefix, path string, line int) []netip.Prefix {
	for _, p := range ps {
		if p.Bits() == 0 {
			im.warn("%s%s (line %d): %s admits every source, so the rules get no from (the box's `sources` in lnm.conf still limits who may use it)", im.doc, path, line, p)
			return nil
		}
	}
	slices.SortFunc(ps, netip.Prefix.Compare)
	return ps
}

// domain imports one spec.allowList.domains entry.
func (im *importer) domain(path string, d *yaml.Node, from []netip.Prefix) error {
	var url, typ string
	var urlNode *yaml.Node
	switch {
	case d.Kind == yaml.ScalarNode && !isNull(d):
		// The az iot ops CLI's test fixture lists bare names.
		url, urlNode = d.Value, d
		if _, port, _, _ := cleanURL(url); port == 0 {
			typ = "external"
			im.warn("%s%s (line %d): a bare name, not {destinationUrl, destinationType}; read as external", im.doc, path, d.Line)
		}
	case d.Kind != yaml.MappingNode:
		return im.errorf(path, d.Line, "want {destinationUrl, destinationType}, got %s", compact(d))
	}
	for k, v := range pairs(d) {
		switch k.Value {
		case "destinationUrl":
			url, urlNode = scalar(v), v
		case "destinationType":
			typ = scalar(v)
		default:
			im.unmapped(path+"."+k.Value, v, k.Line, "unknown field")
		}
	}
	if urlNode == nil || url == "" {
		return im.errorf(path, d.Line, "no destinationUrl")
	}
	origin := im.doc + path
	host, port, notes, err := cleanURL(url)
	if err != nil {
		return im.errorf(path, urlNode.Line, "destinationUrl %q: %v", url, err)
	}
	for _, n := range notes {
		im.warn("%s (line %d): destinationUrl %q: %s", origin, urlNode.Line, url, n)
	}
	switch strings.ToLower(typ) {
	case "external", "internal":
		typ = strings.ToLower(typ)
	case "":
		typ = "external"
		if port != 0 {
			typ = "internal"
		}
		im.warn("%s (line %d): no destinationType; read as %s", origin, d.Line, typ)
	default:
		return im.errorf(path, d.Line, "destinationType %q: want external or internal", typ)
	}
	if _, err := netip.ParseAddr(host); err == nil {
		im.unmapped(path, urlNode, urlNode.Line, "an address, not a name: rules match the names devices ask for; route a port to it with `tcp PORT "+host+":PORT` in lnm.conf")
		return nil
	}
	if typ == "internal" && port == 0 {
		return im.errorf(path, urlNode.Line, "internal destinationUrl %q has no port: LNM needs host:port for east-west entries", url)
	}
	pat, err := allowlist.ParsePattern(host)
	if err != nil {
		return im.errorf(path, urlNode.Line, "destinationUrl %q: %s", url, err)
	}
	r := allowlist.Rule{Pattern: pat, From: from, Origin: origin}
	if port != 0 {
		r.Ports = []uint16{port}
	}
	if typ == "internal" {
		im.warn("%s (line %d): internal %s: LNM sent it to the name's service inside its cluster; the box sends it to its parent, or at the top to the address upstream DNS gives; add `to HOST:PORT` to the rule for a fixed destination", origin, urlNode.Line, url)
	} else {
		im.checkTLD(fmt.Sprintf("%s (line %d)", origin, urlNode.Line), pat)
	}
	im.add(r, true)
	return nil
}

// checkTLD warns about names under a top-level domain that does not exist, the usual sign of
// a typo ("sts.windows.nets" in Microsoft's own list).
func (im *importer) checkTLD(where string, p allowlist.Pattern) {
	suffix, icann := publicsuffix.PublicSuffix(string(p.Base))
	if !icann && !strings.Contains(suffix, ".") {
		im.warn("%s: %s: %q is not a public top-level domain: a typo, or a private name?", where, p, suffix)
	}
}

// cleanURL reduces a destinationUrl to a host pattern and a port. A scheme, a path or a
// trailing slash is dropped with a note: lnm sees names, not URLs.
func cleanURL(s string) (host string, port uint16, notes []string, err error) {
	if t := strings.TrimSpace(s); t != s {
		notes = append(notes, "surrounding spaces removed")
		s = t
	}
	if i := strings.Index(s, "://"); i >= 0 {
		notes = append(notes, fmt.Sprintf("scheme %s:// removed: the box matches names, not URLs", s[:i]))
		s = s[i+3:]
	}
	if i := strings.IndexByte(s, '/'); i >= 0 {
		if s[i:] == "/" {
			notes = append(notes, "trailing slash removed")
		} else {
			notes = append(notes, fmt.Sprintf("path %s removed: the box matches names, not URLs", s[i:]))
		}
		s = s[:i]
	}
	host = s
	switch {
	case strings.HasPrefix(s, "["): // [v6] or [v6]:port
		i := strings.IndexByte(s, ']')
		if i < 0 {
			return "", 0, nil, errors.New("unclosed '['")
		}
		host, s = s[1:i], s[i+1:]
		if s == "" {
			break
		}
		if s[0] != ':' {
			return "", 0, nil, errors.New("want HOST or HOST:PORT")
		}
		if port, err = allowlist.ParsePort(s[1:]); err != nil {
			return "", 0, nil, err
		}
	case strings.Count(s, ":") == 1:
		h, p, _ := strings.Cut(s, ":")
		if port, err = allowlist.ParsePort(p); err != nil {
			return "", 0, nil, err
		}
		host = h
	}
	if host == "" {
		return "", 0, nil, errors.New("no host")
	}
	return host, port, notes, nil
}

// metadataSummary shows an object's name and namespace; the rest (kubectl's annotations,
// managedFields, uid) would drown the list.
func metadataSummary(m *yaml.Node) string {
	if m.Kind != yaml.MappingNode {
		return compact(m)
	}
	var shown []string
	others := 0
	for k, v := range pairs(m) {
		if k.Value == "name" || k.Value == "namespace" {
			shown = append(shown, k.Value+": "+compact(v))
			continue
		}
		others++
	}
	s := "{" + strings.Join(shown, ", ") + "}"
	if others > 0 {
		s += fmt.Sprintf(" and %d more fields", others)
	}
	return s
}
