package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestBashCompletion sources the generated script in a real bash and asks it to complete.
func TestBashCompletion(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("bash is not installed")
	}
	code, script, errOut := runCLI(t, "completion", "bash")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "lnm.bash")
	os.WriteFile(path, []byte(script), 0o644)
	os.WriteFile(filepath.Join(dir, "lnm.conf"), nil, 0o644)
	for _, tc := range []struct {
		name  string
		words string // the command line; the last word is being completed
		want  string // COMPREPLY, space separated
	}{
		{"commands", "lnm a", "audit allow"},
		{"subcommands", "lnm audit q", "query"},
		{"flags of a subcommand", "lnm audit query --c", "--client --config"},
		{"global flags skipped on the way", "lnm --log-level debug allow te", "test"},
		{"a flag's value is a file", "lnm check --config " + dir + "/lnm.c", dir + "/lnm.conf"},
		{"hidden commands are not offered", "lnm com", ""},
		{"version", "lnm version --", "--help"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			words := strings.Fields(tc.words)
			if strings.HasSuffix(tc.words, " ") {
				words = append(words, "")
			}
			prog := `source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _lnm; echo "${COMPREPLY[*]}"`
			out, err := exec.Command(bash, append([]string{"-c", prog, "bash", path}, words...)...).CombinedOutput()
			if err != nil || strings.TrimSpace(string(out)) != tc.want {
				t.Errorf("complete %q: %q (%v), want %q", tc.words, out, err, tc.want)
			}
		})
	}
}

// TestZshCompletion checks that the zsh script parses; its completion functions only run
// inside zsh's line editor.
func TestZshCompletion(t *testing.T) {
	zsh, err := exec.LookPath("zsh")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("zsh is not installed; .ci/run installs it")
		}
		t.Skip("LOUD SKIP: zsh is not installed (apt-get install zsh); CI runs this")
	}
	code, script, _ := runCLI(t, "completion", "zsh")
	if code != 0 || !strings.HasPrefix(script, "#compdef lnm\n") || !strings.Contains(script, "'lnm audit' 'query follow") {
		t.Fatalf("exit %d:\n%s", code, script)
	}
	path := filepath.Join(t.TempDir(), "_lnm")
	os.WriteFile(path, []byte(script), 0o644)
	if out, err := exec.Command(zsh, "-n", path).CombinedOutput(); err != nil {
		t.Fatalf("zsh -n: %v\n%s", err, out)
	}
}

func TestManPage(t *testing.T) {
	code, page, errOut := runCLI(t, "man")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{".TH lnm 1", "audit", "allow", "reload"} {
		if !strings.Contains(page, want) {
			t.Errorf("man page lacks %q", want)
		}
	}
	if strings.Contains(page, "completion") {
		t.Errorf("man page lists the hidden completion command")
	}
}
