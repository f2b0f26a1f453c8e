package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

// TestConsolePasswd: `lnm console passwd` writes the user with a bcrypt hash and the role
// to the console's directory (mode 0600), replaces a password, and refuses a bad name, role
// or short password without writing.
func TestConsolePasswd(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "lnm.conf")
	os.WriteFile(conf, fmt.Appendf(nil, "lnm {\n    listen 127.0.0.1\n    console 127.0.0.1:8444 dir %s/console\n}\n", dir), 0o644)
	users := filepath.Join(dir, "console", "users")
	passwd := func(pw string, args ...string) (int, string, string) {
		t.Helper()
		old := stdin
		stdin = strings.NewReader(pw + "\n")
		defer func() { stdin = old }()
		return runCLI(t, append([]string{"console", "passwd", "--config", conf}, args...)...)
	}
	if code, out, errOut := passwd("first password", "--role", "admin", "alice"); code != 0 || !strings.Contains(out, "user alice (admin) written to "+users) {
		t.Fatalf("passwd alice: %d\n%s%s", code, out, errOut)
	}
	if code, _, errOut := passwd("second password", "victor"); code != 0 {
		t.Fatalf("passwd victor: %d %s", code, errOut)
	}
	if code, _, _ := passwd("new password", "--role", "admin", "alice"); code != 0 {
		t.Fatal("passwd alice again")
	}
	st, err := os.Stat(users)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("users file: %v %v, want mode 0600", st, err)
	}
	lines := map[string][]string{}
	for line := range strings.Lines(readFile(users)) {
		if f := strings.Fields(line); len(f) == 3 && f[0] != "#" {
			lines[f[0]] = f
		}
	}
	if len(lines) != 2 || lines["alice"][1] != "admin" || lines["victor"][1] != "viewer" {
		t.Fatalf("users file:\n%s", readFile(users))
	}
	if bcrypt.CompareHashAndPassword([]byte(lines["alice"][2]), []byte("new password")) != nil {
		t.Error("alice's hash is not of her new password")
	}
	before := readFile(users)
	for _, bad := range [][]string{
		{"long enough", "--role", "root", "mallory"},
		{"long enough", "bad name"},
		{"short", "mallory"},
		{"long enough"},
	} {
		if code, _, _ := passwd(bad[0], bad[1:]...); code == 0 {
			t.Errorf("passwd %v succeeded", bad[1:])
		}
	}
	if readFile(users) != before {
		t.Error("a refused passwd changed the users file")
	}
}

// TestConsolePasswdOwner: run by root, passwd gives the directory and the users file the
// owner of the directory above, so that the service's user can read what root wrote.
func TestConsolePasswdOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to write files for another user: run as root (CI does)")
	}
	state := t.TempDir()
	if err := os.Chown(state, 4242, 4343); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(t.TempDir(), "lnm.conf")
	os.WriteFile(conf, fmt.Appendf(nil, "lnm {\n    listen 127.0.0.1\n    console 127.0.0.1:8444 dir %s/console\n}\n", state), 0o644)
	old := stdin
	stdin = strings.NewReader("a good password\n")
	defer func() { stdin = old }()
	if code, _, errOut := runCLI(t, "console", "passwd", "--config", conf, "alice"); code != 0 {
		t.Fatalf("passwd: %d %s", code, errOut)
	}
	for _, p := range []string{filepath.Join(state, "console"), filepath.Join(state, "console", "users")} {
		var st syscall.Stat_t
		if err := syscall.Stat(p, &st); err != nil || st.Uid != 4242 || st.Gid != 4343 {
			t.Errorf("%s: owner %d:%d (%v), want 4242:4343", p, st.Uid, st.Gid, err)
		}
	}
}
