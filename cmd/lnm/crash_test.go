package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/lnm-project/lnm/audit"
	"github.com/lnm-project/lnm/internal/testkit"
)

// TestKillNineUnderLoad runs the real lnm, sends it DNS queries with unique names, kills it
// with SIGKILL in the middle, and checks the audit log: every query answered longer ago than
// the fsync window (100 ms) is on disk, the log reopens, and a restarted box continues the
// sequence. (A process kill keeps the page cache, so this proves the writer's promptness and
// the log's recovery; power loss is the fsync policy's part.) One client sends as fast as it
// can, so its rate limit is off.
func TestKillNineUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the lnm binary")
	}
	bin := buildLNM(t)
	dir := t.TempDir()
	port := testkit.FreePort(t)
	conf := filepath.Join(dir, "lnm.conf")
	os.WriteFile(conf, []byte(fmt.Sprintf(`lnm {
    listen 127.0.0.1
    dns    %d
    admin  %s/admin.sock
    audit  %s/audit
    dns_rate_limit off
    allow {
        *.load.test
    }
}
`, port, dir, dir)), 0o644)
	start := func() *exec.Cmd {
		cmd := exec.Command(bin, "run", "--config", conf)
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		return cmd
	}
	box := start()
	server := fmt.Sprintf("127.0.0.1:%d", port)
	c := &dns.Client{Timeout: time.Second}
	if !waitFor(10*time.Second, func() bool {
		_, _, err := c.Exchange(new(dns.Msg).SetQuestion("ready.load.test.", dns.TypeA), server)
		return err == nil
	}) {
		t.Fatal("lnm did not answer within 10 s")
	}

	answered := map[string]time.Time{}
	deadline := time.Now().Add(1500 * time.Millisecond)
	for i := 0; time.Now().Before(deadline); i++ {
		name := fmt.Sprintf("q%d.load.test", i)
		r, _, err := c.Exchange(new(dns.Msg).SetQuestion(name+".", dns.TypeA), server)
		if err == nil && len(r.Answer) == 1 {
			answered[name] = time.Now()
		}
	}
	killed := time.Now()
	if err := box.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	box.Wait()

	onDisk := map[string]bool{}
	var last uint64
	if err := audit.Read(filepath.Join(dir, "audit"), audit.Filter{Kind: audit.KindDNS}, func(r *audit.Record) bool {
		onDisk[r.Name] = true
		last = r.Seq
		return true
	}); err != nil {
		t.Fatal(err)
	}
	missing, old := 0, 0
	for name, at := range answered {
		if killed.Sub(at) > 100*time.Millisecond {
			old++
			if !onDisk[name] {
				missing++
			}
		}
	}
	t.Logf("%d queries answered, %d older than the fsync window, %d records on disk", len(answered), old, len(onDisk))
	if old < 100 || missing > 0 {
		t.Fatalf("%d of %d answered queries older than 100 ms are missing from the log", missing, old)
	}

	// The log reopens after the crash and the sequence continues.
	start()
	if !waitFor(10*time.Second, func() bool {
		_, _, err := c.Exchange(new(dns.Msg).SetQuestion("again.load.test.", dns.TypeA), server)
		return err == nil
	}) {
		t.Fatal("lnm did not come back on the crashed log")
	}
	var again *audit.Record
	waitFor(5*time.Second, func() bool {
		recs, _ := audit.ReadNewest(filepath.Join(dir, "audit"), audit.Filter{Kind: audit.KindDNS}, 1)
		if len(recs) == 1 && recs[0].Name == "again.load.test" {
			again = &recs[0]
		}
		return again != nil
	})
	if again == nil || again.Seq <= last {
		t.Fatalf("after restart: %+v, want a record after seq %d", again, last)
	}
}
