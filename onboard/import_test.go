package onboard

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lnm-project/lnm/allowlist"
	"github.com/lnm-project/lnm/internal/testkit"
)

// TestImportGolden imports every file in testdata/import by content (the format is detected)
// and compares the rules, the unmapped fields and the warnings with FILE.golden. Adding a
// case is adding a file; go test -run TestImportGolden -update writes the goldens.
func TestImportGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/import/*")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, in := range files {
		if strings.HasSuffix(in, ".golden") {
			continue
		}
		n++
		t.Run(filepath.Base(in), func(t *testing.T) {
			data, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			res, err := Import(data, "")
			got := renderImport(res, err)
			testkit.Golden(t, in+".golden", got)
			if err == nil {
				// What an import gives, the config accepts.
				if _, err := allowlist.New(res.Rules); err != nil {
					t.Errorf("imported rules do not make a list: %v", err)
				}
			}
		})
	}
	if n < 8 {
		t.Fatalf("found %d import cases; the testdata went missing", n)
	}
}

func renderImport(res ImportResult, err error) string {
	if err != nil {
		return "error: " + err.Error() + "\n"
	}
	var b strings.Builder
	b.WriteString("rules:\n")
	for _, r := range res.Rules {
		b.WriteString(r.String() + "  # " + r.Origin + "\n")
	}
	b.WriteString("unmapped:\n")
	for _, u := range res.Unmapped {
		b.WriteString(u + "\n")
	}
	b.WriteString("warnings:\n")
	for _, w := range res.Warnings {
		b.WriteString(w + "\n")
	}
	return b.String()
}

// TestImportDec2024IsThePreset: the newest documented CR lists exactly the
// azure-iot-operations preset, so the preset and the import cannot drift apart unnoticed.
func TestImportDec2024IsThePreset(t *testing.T) {
	data, err := os.ReadFile("testdata/import/lnm-dec2024.yaml")
	if err != nil {
		t.Fatal(err)
	}
	res, err := ImportLnm(data)
	if err != nil {
		t.Fatal(err)
	}
	want, err := Preset("azure-iot-operations")
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Rules) != len(want) {
		t.Fatalf("import gave %d rules, the preset has %d", len(res.Rules), len(want))
	}
	for i := range want {
		if got := res.Rules[i].String(); got != want[i].String() {
			t.Errorf("rule %d: import %q, preset %q", i, got, want[i].String())
		}
	}
}

func TestImportErrors(t *testing.T) {
	const head = "apiVersion: layerednetworkmgmt.iotoperations.azure.com/v1beta1\nkind: Lnm\nspec:\n  allowList:\n"
	for _, tc := range []struct {
		name, format, in, want string
	}{
		{"bad pattern", "", head + "    domains:\n    - destinationUrl: \"a*.example.com\"\n      destinationType: external\n",
			`onboard: import: spec.allowList.domains[0] (line 6): destinationUrl "a*.example.com": pattern "a*.example.com": '*' is allowed only as a whole first label ("*.example.com")`},
		{"internal without port", "", head + "    domains:\n    - destinationUrl: broker.plant.internal\n      destinationType: internal\n",
			`onboard: import: spec.allowList.domains[0] (line 6): internal destinationUrl "broker.plant.internal" has no port: LNM needs host:port for east-west entries`},
		{"bad port", "", head + "    domains:\n    - destinationUrl: broker.plant.internal:88830\n      destinationType: internal\n",
			`onboard: import: spec.allowList.domains[0] (line 6): destinationUrl "broker.plant.internal:88830": port "88830": want a number from 1 to 65535`},
		{"bad type", "", head + "    domains:\n    - destinationUrl: example.com\n      destinationType: outbound\n",
			`onboard: import: spec.allowList.domains[0] (line 6): destinationType "outbound": want external or internal`},
		{"no url", "", head + "    domains:\n    - destinationType: external\n",
			`onboard: import: spec.allowList.domains[0] (line 6): no destinationUrl`},
		{"bad prefix length", "", head + "    sourceIpRange:\n    - addressPrefix: 10.0.0.0\n      prefixLen: 33\n",
			`onboard: import: spec.allowList.sourceIpRange[0] (line 7): prefixLen "33": want 0 to 32`},
		{"bad address", "", head + "    sourceIpRange:\n    - addressPrefix: ten\n      prefixLen: 8\n",
			`onboard: import: spec.allowList.sourceIpRange[0] (line 6): addressPrefix "ten" is not an IP address`},
		{"arc not a bool", "", head + "    enableArcDomains: [yes]\n",
			`onboard: import: spec.allowList.enableArcDomains (line 5): want true or false, got [yes]`},
		{"not an Lnm", "lnm", "apiVersion: v1\nkind: ConfigMap\n",
			`onboard: import: no Lnm custom resource in the file (want apiVersion layerednetworkmgmt.iotoperations.azure.com/v1beta1, kind Lnm)`},
		{"bad YAML", "lnm", "apiVersion: [\n",
			`onboard: import: yaml: line 1: did not find expected node content`},
		{"unknown format", "", "hello\n",
			`onboard: import: neither an Lnm custom resource (no apiVersion/kind) nor a dnsmasq file (no address= or server= line); name the format`},
		{"dnsmasq bad name", "dnsmasq", "address=/exa mple.com/10.0.0.1\n",
			`onboard: import: line 1: "exa mple.com": pattern ".exa mple.com": byte ' ' not allowed in name "exa mple.com"`},
		{"dnsmasq no rules", "dnsmasq", "no-hosts\naddress=/ads.example.com/\n",
			`onboard: import: no address=/NAME/IP or server=/NAME/IP line in the file`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Import([]byte(tc.in), tc.format)
			if err == nil {
				t.Fatalf("no error, want %s", tc.want)
			}
			if err.Error() != tc.want {
				t.Errorf("error\n got: %s\nwant: %s", err, tc.want)
			}
		})
	}
}

func TestDetectImportFormat(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"apiVersion: az-edge.com/v1\nkind: E4in\n", FormatLnm},
		{"# comment\n---\nkind: Lnm\n", FormatLnm},
		{"no-hosts\naddress=/x.example/10.0.0.1\n", FormatDnsmasq},
		{"  server=/x.example/10.0.0.1\n", FormatDnsmasq},
		{"x.example\n", ""},
	} {
		if got := DetectImportFormat([]byte(tc.in)); got != tc.want {
			t.Errorf("DetectImportFormat(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestCleanURL(t *testing.T) {
	for _, tc := range []struct {
		in    string
		host  string
		port  uint16
		notes int
	}{
		{"management.azure.com", "management.azure.com", 0, 0},
		{"*.servicebus.windows.net", "*.servicebus.windows.net", 0, 0},
		{"graph.microsoft.com/", "graph.microsoft.com", 0, 1},
		{"https://x.example:8443/path", "x.example", 8443, 2},
		{" broker.plant:8883 ", "broker.plant", 8883, 1},
		{"[2001:db8::1]:8883", "2001:db8::1", 8883, 0},
		{"2001:db8::1", "2001:db8::1", 0, 0},
	} {
		host, port, notes, err := cleanURL(tc.in)
		if err != nil || host != tc.host || port != tc.port || len(notes) != tc.notes {
			t.Errorf("cleanURL(%q) = %q, %d, %q, %v; want %q, %d, %d notes", tc.in, host, port, notes, err, tc.host, tc.port, tc.notes)
		}
	}
}

func TestImportSetFile(t *testing.T) {
	res, err := ImportDnsmasq([]byte("address=/x.example/10.0.0.1\n"))
	if err != nil {
		t.Fatal(err)
	}
	res.SetFile("dnsmasq.conf")
	if got := res.Rules[0].Origin; got != "dnsmasq.conf: line 1" {
		t.Errorf("origin %q", got)
	}
}

func FuzzImportLnm(f *testing.F) {
	files, _ := filepath.Glob("testdata/import/*.yaml")
	for _, in := range files {
		data, err := os.ReadFile(in)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		res, err := ImportLnm(data)
		if err != nil {
			return
		}
		if _, err := allowlist.New(res.Rules); err != nil {
			t.Fatalf("imported rules do not make a list: %v", err)
		}
	})
}

// TestImportAliasBomb: aliases are not expanded when fields are listed, so a billion laughs
// stays a few lines.
func TestImportAliasBomb(t *testing.T) {
	in := "apiVersion: aio.com/v1\nkind: Lnm\nspec:\n  a: &a [x, x, x, x, x, x, x, x, x, x]\n"
	prev := "a"
	for _, n := range []string{"b", "c", "d", "e", "f", "g", "h", "i"} {
		in += "  " + n + ": &" + n + " [*" + prev + ", *" + prev + ", *" + prev + ", *" + prev + ", *" + prev + ", *" + prev + ", *" + prev + ", *" + prev + ", *" + prev + ", *" + prev + "]\n"
		prev = n
	}
	res, err := ImportLnm([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range res.Unmapped {
		if len(u) > 1000 {
			t.Errorf("unmapped line of %d bytes", len(u))
		}
	}
}
