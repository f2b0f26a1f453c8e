package main

// End to end: reloads under traffic, in the namespace lab. A long download through both
// boxes survives reload after reload; a stream the new list no longer allows is cut and
// recorded (on_revoke revoke), or left to finish (on_revoke drain).

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lnm-project/lnm/audit"
	"github.com/lnm-project/lnm/forwarder"
)

// download is a curl of /bytes/N from the device, running in the background.
type download struct {
	cmd  *exec.Cmd
	out  strings.Builder
	errb strings.Builder
	done chan error
}

// startDownload fetches n bytes from https://name/ through the boxes at the given rate.
func (l *lab) startDownload(name string, n int64, rate string) *download {
	l.t.Helper()
	d := &download{done: make(chan error, 1)}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	l.t.Cleanup(cancel)
	d.cmd = l.cmd(ctx, "dev", "curl", "-sS", "--noproxy", "*", "--cacert", l.caFile, "-o", "/dev/null",
		"-w", "%{size_download}", "--limit-rate", rate, "https://"+name+"/bytes/"+strconv.FormatInt(n, 10))
	d.cmd.Stdout, d.cmd.Stderr = &d.out, &d.errb
	if err := d.cmd.Start(); err != nil {
		l.t.Fatal(err)
	}
	go func() { d.done <- d.cmd.Wait() }()
	return d
}

// wait returns curl's error and the bytes it received.
func (d *download) wait(t *testing.T) (int64, error) {
	t.Helper()
	select {
	case err := <-d.done:
		n, _ := strconv.ParseInt(strings.TrimSpace(d.out.String()), 10, 64)
		return n, err
	case <-time.After(2 * time.Minute):
		t.Fatal("download did not end within 2 minutes")
		return 0, nil
	}
}

// running reports whether the download is still going after d.
func (d *download) running(after time.Duration) bool {
	select {
	case err := <-d.done:
		d.done <- err
		return false
	case <-time.After(after):
		return true
	}
}

// rewriteConfig edits a box's config file and asks the box to reload it.
func (l *lab) rewriteConfig(bin, host string, edit func(string) string) {
	l.t.Helper()
	path := filepath.Join(l.dir, host+".conf")
	b, err := os.ReadFile(path)
	if err != nil {
		l.t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(edit(string(b))), 0o644); err != nil {
		l.t.Fatal(err)
	}
	if out, err := exec.Command(bin, "reload", "--config", path).CombinedOutput(); err != nil {
		l.t.Fatalf("lnm reload on %s: %v\n%s", host, err, out)
	}
}

func TestE2EReload(t *testing.T) {
	requireLab(t)
	bin := buildLNM(t)
	l := newLab(t)
	l.dumpLogsOnFailure()
	l.startInet()
	l4 := l.startBox(bin, "l4", exampleConfig(t, "level4.conf"), l4DownAddr)
	l.startBox(bin, "l3", exampleConfig(t, "level3.conf"), l3DownAddr)
	l3conf := filepath.Join(l.dir, "l3.conf")

	t.Run("download_survives_20_reloads", func(t *testing.T) {
		const size = 1 << 30
		// Under the race detector the boxes and their reloads are several times slower: a
		// slower download keeps all 20 reloads inside it.
		rate := "150M"
		if raceEnabled {
			rate = "25M"
		}
		d := l.startDownload("www.contoso.test", size, rate)
		for i := range 20 {
			if !d.running(100 * time.Millisecond) {
				t.Fatalf("the download ended after %d reloads", i)
			}
			switch {
			case i == 9: // an edit through the admin API is a reload too
				if out, err := exec.Command(bin, "allow", "add", "--config", l3conf, "historian.contoso.test", "--port", "443").CombinedOutput(); err != nil {
					t.Fatalf("lnm allow add: %v\n%s", err, out)
				}
			case i%2 == 0:
				if out, err := exec.Command(bin, "reload", "--config", l3conf).CombinedOutput(); err != nil {
					t.Fatalf("lnm reload: %v\n%s", err, out)
				}
			default:
				if err := l4.cmd.Process.Signal(sighup); err != nil {
					t.Fatal(err)
				}
			}
		}
		n, err := d.wait(t)
		if err != nil || n != size {
			t.Fatalf("download: %d of %d bytes, %v\n%s", n, size, err, d.errb.String())
		}
		reloads := 0
		for _, r := range l.auditQuery(bin, "l3", "--kind", "config") {
			if strings.HasPrefix(r.Change, "reload ") && r.Hash != "" {
				reloads++
			}
		}
		if reloads != 11 { // ten lnm reload and one allow add
			t.Errorf("level 3 recorded %d reloads, want 11", reloads)
		}
	})

	t.Run("bad_config_keeps_running", func(t *testing.T) {
		b, _ := os.ReadFile(l3conf)
		good := string(b)
		os.WriteFile(l3conf, []byte(strings.Replace(good, "*.azure.test", "a.*.azure.test", 1)), 0o644)
		out, err := exec.Command(bin, "reload", "--config", l3conf).CombinedOutput()
		if err == nil || !strings.Contains(string(out), l3conf+":") {
			t.Errorf("reload of a bad file: %v, want an error naming FILE:LINE\n%s", err, out)
		}
		os.WriteFile(l3conf, []byte(good), 0o644)
		if body, errOut, err := l.curl("dev", "https://api.azure.test/"); err != nil {
			t.Errorf("after a refused reload the old list must serve: %v %s %s", err, body, errOut)
		}
	})

	removeAzure := func(s string) string { return strings.Replace(s, "*.azure.test", "# *.azure.test", 1) }
	restoreAzure := func(s string) string { return strings.Replace(s, "# *.azure.test", "*.azure.test", 1) }

	t.Run("revoke_cuts_a_removed_name", func(t *testing.T) {
		d := l.startDownload("api.azure.test", 1<<30, "20M")
		if !d.running(time.Second) {
			t.Fatalf("download ended early: %s", d.errb.String())
		}
		l.rewriteConfig(bin, "l3", removeAzure)
		defer l.rewriteConfig(bin, "l3", restoreAzure)
		n, err := d.wait(t)
		if err == nil || n >= 1<<30 {
			t.Fatalf("the stream to a removed name went on: %d bytes, %v", n, err)
		}
		ok := waitFor(5*time.Second, func() bool {
			for _, r := range l.auditQuery(bin, "l3", "--kind", "conn", "--name", "api.azure.test") {
				if r.Event == audit.EventClose && r.Reason == string(forwarder.ReasonRevoked) && r.BytesDown > 0 {
					return true
				}
			}
			return false
		})
		if !ok {
			t.Error("no close record with reason revoked for api.azure.test")
		}
	})

	t.Run("allow_remove_cuts_a_live_connection", func(t *testing.T) {
		// api.azure.test lives only in the managed file for this test.
		l.rewriteConfig(bin, "l3", removeAzure)
		defer l.rewriteConfig(bin, "l3", restoreAzure)
		if out, err := exec.Command(bin, "allow", "add", "--config", l3conf, "api.azure.test", "--comment", "e2e").CombinedOutput(); err != nil {
			t.Fatalf("lnm allow add: %v\n%s", err, out)
		}
		d := l.startDownload("api.azure.test", 1<<30, "20M")
		if !d.running(time.Second) {
			t.Fatalf("download through a rule added by lnm allow add ended early: %s", d.errb.String())
		}
		if out, err := exec.Command(bin, "allow", "remove", "--config", l3conf, "api.azure.test").CombinedOutput(); err != nil {
			t.Fatalf("lnm allow remove: %v\n%s", err, out)
		}
		if n, err := d.wait(t); err == nil || n >= 1<<30 {
			t.Fatalf("the stream to a removed name went on: %d bytes, %v", n, err)
		}
		ok := waitFor(5*time.Second, func() bool {
			revoked, byUID := false, false
			for _, r := range l.auditQuery(bin, "l3", "--since", "1m") {
				revoked = revoked || (r.Kind == audit.KindConn && r.SNI == "api.azure.test" && r.Reason == string(forwarder.ReasonRevoked))
				byUID = byUID || (r.Kind == audit.KindConfig && strings.Contains(r.Change, "-api.azure.test") && r.UID != nil)
			}
			return revoked && byUID
		})
		if !ok {
			t.Error("want a close record with reason revoked and a config record of the removal with the caller's uid")
		}
	})

	t.Run("drain_lets_it_finish", func(t *testing.T) {
		l.rewriteConfig(bin, "l3", func(s string) string {
			return addDirectives(t, s, "on_revoke drain")
		})
		const size = 64 << 20
		d := l.startDownload("api.azure.test", size, "20M")
		if !d.running(time.Second) {
			t.Fatalf("download ended early: %s", d.errb.String())
		}
		l.rewriteConfig(bin, "l3", removeAzure)
		defer l.rewriteConfig(bin, "l3", restoreAzure)
		if n, err := d.wait(t); err != nil || n != size {
			t.Fatalf("with on_revoke drain the download must finish: %d of %d bytes, %v", n, size, err)
		}
		if _, _, err := l.curl("dev", "https://api.azure.test/"); err == nil {
			t.Error("a new connection to the removed name got through")
		}
	})
}

var sighup = syscall.SIGHUP
