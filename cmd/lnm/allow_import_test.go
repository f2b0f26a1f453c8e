package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/lnm-project/lnm/allowfile"
	"github.com/lnm-project/lnm/appliance"
	"github.com/lnm-project/lnm/config"
	"github.com/lnm-project/lnm/internal/testkit"
)

// importCases are the documented custom resources appliance's import tests read.
const importCases = "../../onboard/testdata/import/"

// noBoxConfig writes a config whose admin socket nothing answers on, listening on 443 only,
// with one rule the Dec 2024 CR also has.
func noBoxConfig(t *testing.T) string {
	t.Helper()
	return writeConfig(t, filepath.Join(socketDir(t), "admin.sock"), "off",
		"proxy 443", "allow {", "    management.azure.com", "}")
}

// TestAllowImportDryRun prints what an import would add, next to the list, and writes
// nothing.
func TestAllowImportDryRun(t *testing.T) {
	conf := noBoxConfig(t)
	code, stdout, stderr := runCLI(t, "allow", "import", importCases+"lnm-internal.yaml", "--dry-run", "--config", conf)
	if code != 0 || stderr != "" {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	testkit.Golden(t, "testdata/allow_import_dry.golden", strings.ReplaceAll(stdout, conf, "CONF"))
	if _, err := os.Stat(allowfile.PathFor(conf)); !os.IsNotExist(err) {
		t.Errorf("a dry run wrote the managed file: %v", err)
	}

	// Without a config there is nothing to compare with, and that is said.
	code, stdout, stderr = runCLI(t, "allow", "import", importCases+"e4in-oct2023.yaml", "--dry-run", "--config", filepath.Join(t.TempDir(), "none.conf"))
	if code != 0 || !strings.Contains(stderr, "not compared with the allow list") ||
		!strings.Contains(stdout, "e4in-oct2023.yaml: 19 rules\n") || !strings.HasSuffix(stdout, "dry run: nothing written\n") {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
}

// TestAllowImportFiles imports with no box running: the managed file is edited directly,
// rules already in the list are skipped, and an import the box would refuse adds nothing.
func TestAllowImportFiles(t *testing.T) {
	conf := noBoxConfig(t)
	mpath := allowfile.PathFor(conf)
	for _, tc := range []struct {
		name           string
		args           []string
		code           int
		stdout, stderr string // substrings
	}{
		{"Dec 2024 CR", []string{importCases + "lnm-dec2024.yaml"}, 0,
			"added linuxgeneva-microsoft.azurecr.io (" + mpath + ":", "lnm is not running (nothing answers at "},
		{"again", []string{importCases + "lnm-dec2024.yaml"}, 0, "nothing to add: the allow list has every rule\n", ""},
		{"internal port without proxy", []string{importCases + "lnm-level3.yaml"}, 2,
			"ports without a proxy listener (2):\n  port 4840: opcua.plant.internal 4840 from 10.103.0.0/16 192.168.30.0/24 (proxy listens on 443)",
			"nothing added: port 4840 (opcua.plant.internal 4840 from 10.103.0.0/16 192.168.30.0/24) has no proxy listener (proxy listens on 443): add it to proxy in the config first"},
		{"dnsmasq", []string{importCases + "dnsmasq-mixed.conf", "--format", "dnsmasq"}, 0,
			"added .plant.internal (" + mpath + ":", "edited the file directly"},
		{"wrong format", []string{importCases + "dnsmasq-mixed.conf", "--format", "lnm"}, 2, "",
			"dnsmasq-mixed.conf: onboard: import: no Lnm custom resource in the file"},
		{"unknown format", []string{importCases + "dnsmasq-mixed.conf", "--format", "hosts"}, 2, "", `--format "hosts": want lnm or dnsmasq`},
		{"no such file", []string{"nowhere.yaml"}, 1, "", "open nowhere.yaml: no such file or directory"},
		{"no file", nil, 2, "", "allow import takes one FILE"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append(append([]string{"allow", "import"}, tc.args...), "--config", conf)
			code, stdout, stderr := runCLI(t, args...)
			if code != tc.code || !strings.Contains(stdout, tc.stdout) || !strings.Contains(stderr, tc.stderr) {
				t.Fatalf("exit %d, want %d\nstdout: %s\nwant:   %s\nstderr: %s\nwant:   %s", code, tc.code, stdout, tc.stdout, stderr, tc.stderr)
			}
		})
	}
	list, err := appliance.LoadAllowList(conf)
	if err != nil {
		t.Fatal(err)
	}
	managed := 0
	for _, r := range list.Rules {
		if r.Managed {
			managed++
		}
	}
	// The CR without management.azure.com, and dnsmasq-mixed.conf's rules but
	// *.blob.core.windows.net, which the CR has.
	if managed != 23+3 {
		t.Errorf("%d managed rules, want 26", managed)
	}
	data, err := os.ReadFile(mpath)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), ": imported from "+importCases+"lnm-dec2024.yaml: spec.allowList.domains[23]\n*.blob.storage.azure.net\n") {
		t.Errorf("the managed file does not say where a rule came from:\n%s", data)
	}
}

// TestAllowImportBox imports through a running box: the rules apply at once.
func TestAllowImportBox(t *testing.T) {
	dnsPort := testkit.FreePort(t)
	socket := filepath.Join(socketDir(t), "admin.sock")
	conf := writeConfig(t, socket, "off", fmt.Sprintf("dns %d", dnsPort), "proxy 443 8883", "parent 127.0.0.2",
		"allow {", "    *.azure.test", "}")
	cfg, err := config.Load(conf)
	if err != nil {
		t.Fatal(err)
	}
	rt, err := appliance.Start(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	code, stdout, stderr := runCLI(t, "allow", "import", importCases+"lnm-internal.yaml", "--config", conf)
	if code != 0 || stderr != "" || !strings.Contains(stdout, "the box applied it: 39 rules") {
		t.Fatalf("exit %d\n%s%s", code, stdout, stderr)
	}
	r, err := dns.Exchange(new(dns.Msg).SetQuestion("aio-mq-dmqtt-frontend.contoso-corp.com.", dns.TypeA), fmt.Sprintf("127.0.0.1:%d", dnsPort))
	if err != nil {
		t.Fatal(err)
	}
	if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
		t.Fatalf("the imported name does not resolve: %v", r)
	}
}

func TestAllowPresets(t *testing.T) {
	code, stdout, stderr := runCLI(t, "allow", "presets")
	if code != 0 || stderr != "" {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	testkit.Golden(t, "testdata/allow_presets.golden", stdout)
	code, stdout, _ = runCLI(t, "allow", "presets", "--json")
	var got []struct {
		Name     string   `json:"name"`
		Patterns []string `json:"patterns"`
	}
	if code != 0 || json.Unmarshal([]byte(stdout), &got) != nil || len(got) != 2 || got[1].Name != "azure-iot-operations" || len(got[1].Patterns) != 24 {
		t.Fatalf("exit %d, %+v\n%s", code, got, stdout)
	}
}
