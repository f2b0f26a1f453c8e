package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/lnm-project/lnm/audit"
	"github.com/lnm-project/lnm/internal/testkit"
)

// TestKillNineNoAnswerUnrecorded: under saturating DNS load (eight clients, 32 queries in
// flight each, allowed and denied names, every name unique), lnm is killed with SIGKILL;
// every answer any client received, however late, has its record in the audit log. The
// records reach the kernel before the answers leave (the resolver's Flush hook), so a crash
// of the process loses none a client saw. Three runs, each on a fresh log.
func TestKillNineNoAnswerUnrecorded(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the lnm binary")
	}
	bin := buildLNM(t)
	for run := range 3 {
		t.Run(fmt.Sprint(run), func(t *testing.T) { killNineRun(t, bin, run) })
	}
}

func killNineRun(t *testing.T, bin string, run int) {
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
	box := exec.Command(bin, "run", "--config", conf)
	box.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := box.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { box.Process.Kill(); box.Wait() })
	server := fmt.Sprintf("127.0.0.1:%d", port)
	c := &dns.Client{Timeout: time.Second}
	if !waitFor(10*time.Second, func() bool {
		_, _, err := c.Exchange(new(dns.Msg).SetQuestion("ready.load.test.", dns.TypeA), server)
		return err == nil
	}) {
		t.Fatal("lnm did not answer within 10 s")
	}

	const workers, window = 8, 32
	var (
		mu       sync.Mutex
		answered = map[string]int{} // name → rcode the client received
		total    atomic.Int64
		stop     atomic.Bool
		wg       sync.WaitGroup
	)
	for w := range workers {
		conn, err := net.Dial("udp", server)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		wg.Go(func() {
			buf := make([]byte, 1500)
			for i := 0; !stop.Load(); {
				for range window {
					zone := "load.test"
					if i%3 == 0 {
						zone = "load.test.evil.test" // denied: NXDOMAIN, an urgent record
					}
					q := new(dns.Msg).SetQuestion(fmt.Sprintf("r%d-w%d-%d.%s.", run, w, i, zone), dns.TypeA)
					wire, _ := q.Pack()
					conn.Write(wire)
					i++
				}
				conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
				for range window {
					n, err := conn.Read(buf)
					var ne net.Error
					if errors.As(err, &ne) && ne.Timeout() || err != nil {
						break
					}
					m := new(dns.Msg)
					if m.Unpack(buf[:n]) != nil || len(m.Question) != 1 {
						continue
					}
					mu.Lock()
					answered[m.Question[0].Name] = m.Rcode
					mu.Unlock()
					total.Add(1)
				}
			}
		})
	}
	// Kill it in full flow: once the clients have thousands of answers.
	if !waitFor(30*time.Second, func() bool { return total.Load() >= 5000 }) {
		stop.Store(true)
		wg.Wait()
		t.Fatalf("only %d answers in 30 s", total.Load())
	}
	if err := box.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	box.Wait()
	stop.Store(true)
	wg.Wait() // the last reads time out: every answer that left the box is counted

	onDisk := map[string]string{}
	if err := audit.Read(filepath.Join(dir, "audit"), audit.Filter{Kind: audit.KindDNS}, func(r *audit.Record) bool {
		onDisk[r.Name+"."] = r.Rcode
		return true
	}); err != nil {
		t.Fatal(err)
	}
	missing := 0
	for name, rcode := range answered {
		if got, ok := onDisk[name]; !ok || got != dns.RcodeToString[rcode] {
			if missing++; missing <= 5 {
				t.Errorf("%s answered %s, record %q (found %v)", name, dns.RcodeToString[rcode], got, ok)
			}
		}
	}
	t.Logf("%d answers received, %d DNS records on disk, %d answers without their record", len(answered), len(onDisk), missing)
	if missing > 0 {
		t.Fatalf("%d of %d answers the clients saw have no record", missing, len(answered))
	}
}
