package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lnm-project/lnm/internal/testkit"
)

// TestMain fails the package when any test leaves a goroutine running: the CLI runs in
// this process, and so do the boxes of audit_box_test.go.
func TestMain(m *testing.M) { testkit.Main(m) }

func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(append([]string{"lnm"}, args...), &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestCheck(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.conf")
	os.WriteFile(bad, []byte("lnm {\n    listen 127.0.0.1\n    allow {\n        a.*.example.com\n    }\n}\n"), 0o644)
	for _, tc := range []struct {
		name   string
		args   []string
		code   int
		stdout string // substring
		stderr string // substring
	}{
		{"level3 example", []string{"check", "--config", "../../examples/level3.conf"}, 0, "5 rules, in match order", ""},
		{"level4 example", []string{"check", "-c", "../../examples/level4.conf"}, 0, "198.18.5.53:53", ""},
		{"bad pattern names file and line", []string{"check", "--config", bad}, 2, "", bad + ":4: pattern \"a.*.example.com\""},
		{"missing file", []string{"check", "--config", "/nonexistent/lnm.conf"}, 2, "", "/nonexistent/lnm.conf"},
		{"run refuses a bad config", []string{"run", "--config", bad}, 2, "", bad + ":4:"},
		{"unknown command", []string{"frobnicate"}, 2, "", ""},
		{"bad log level", []string{"--log-level", "loud", "run", "--config", bad}, 2, "", "--log-level \"loud\""},
		{"version", []string{"version"}, 0, "lnm ", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := runCLI(t, tc.args...)
			if code != tc.code || !strings.Contains(stdout, tc.stdout) || !strings.Contains(stderr, tc.stderr) {
				t.Fatalf("lnm %v: exit %d, want %d\nstdout: %s\nstderr: %s", tc.args, code, tc.code, stdout, stderr)
			}
		})
	}
}

func TestCheckUsesEnvironment(t *testing.T) {
	t.Setenv("LNM_CONFIG", "../../examples/quickstart.conf")
	code, stdout, stderr := runCLI(t, "check")
	if code != 0 || !strings.Contains(stdout, "examples/quickstart.conf") {
		t.Fatalf("LNM_CONFIG not used: exit %d\n%s%s", code, stdout, stderr)
	}
}

func TestLogger(t *testing.T) {
	var buf bytes.Buffer
	log, err := newLogger("debug", "auto", &buf) // a buffer is not a terminal: JSON
	if err != nil {
		t.Fatal(err)
	}
	log.Debug("hello", "k", "v")
	var rec map[string]any
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil || rec["msg"] != "hello" || rec["k"] != "v" {
		t.Fatalf("auto format off a terminal: %q is not the JSON record (%v)", buf.String(), err)
	}
	buf.Reset()
	log, _ = newLogger("warn", "text", &buf)
	log.Info("quiet")
	log.Warn("loud")
	if out := buf.String(); strings.Contains(out, "quiet") || !strings.Contains(out, "loud") || strings.HasPrefix(out, "{") {
		t.Fatalf("text format at warn level wrote %q", out)
	}
	if _, err := newLogger("info", "xml", &buf); err == nil {
		t.Fatal("an unknown format was accepted")
	}
}
