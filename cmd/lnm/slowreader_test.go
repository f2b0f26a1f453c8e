package main

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/lnm-project/lnm/internal/testkit"
)

// loopbackBox is a real lnm process on 127.0.0.1, for the fault tests that need the built
// binary but no namespace: every packet stays on loopback.
type loopbackBox struct {
	cmd   *exec.Cmd
	dir   string
	dns   uint16
	proxy uint16
	log   string
}

// startLoopbackBox writes a config with the given allow rules (each may use PROXY for the
// proxy port) and extra directives, starts `lnm run` on it, and waits until its proxy port
// accepts. prep, when set, edits the command before it starts (a resource limit, say).
func startLoopbackBox(t *testing.T, bin string, rules, directives []string, prep func(*exec.Cmd)) *loopbackBox {
	t.Helper()
	b := &loopbackBox{dir: t.TempDir(), dns: testkit.FreePort(t), proxy: testkit.FreePort(t)}
	for b.proxy == b.dns {
		b.proxy = testkit.FreePort(t)
	}
	port := strconv.Itoa(int(b.proxy))
	var allow strings.Builder
	for _, r := range rules {
		fmt.Fprintf(&allow, "        %s\n", strings.ReplaceAll(r, "PROXY", port))
	}
	conf := filepath.Join(b.dir, "lnm.conf")
	text := fmt.Sprintf("lnm {\n    listen 127.0.0.1\n    dns %d\n    proxy %d\n    admin %s\n    audit %s\n%s    allow {\n%s    }\n}\n",
		b.dns, b.proxy, filepath.Join(b.dir, "admin.sock"), filepath.Join(b.dir, "audit"),
		indent(directives), allow.String())
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "check", "--config", conf).CombinedOutput(); err != nil {
		t.Fatalf("lnm check: %v\n%s\n%s", err, out, text)
	}
	b.log = filepath.Join(b.dir, "lnm.log")
	logf, err := os.Create(b.log)
	if err != nil {
		t.Fatal(err)
	}
	b.cmd = exec.Command(bin, "--log-level", "debug", "run", "--config", conf)
	b.cmd.Stdout, b.cmd.Stderr = logf, logf
	b.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if prep != nil {
		prep(b.cmd)
	}
	if err := b.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { b.cmd.Wait(); logf.Close(); close(exited) }()
	t.Cleanup(func() {
		b.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			b.cmd.Process.Kill()
			<-exited
			t.Errorf("lnm did not stop within 10 s of SIGTERM")
		}
		if t.Failed() {
			t.Logf("lnm log:\n%s", readFile(b.log))
		}
	})
	if !waitFor(15*time.Second, func() bool {
		select {
		case <-exited:
			return true
		default:
		}
		c, err := net.Dial("tcp", b.proxyAddr())
		if err == nil {
			c.Close()
		}
		return err == nil
	}) {
		t.Fatalf("lnm's proxy %s did not accept within 15 s\n%s", b.proxyAddr(), readFile(b.log))
	}
	select {
	case <-exited:
		t.Fatalf("lnm exited during start-up\n%s", readFile(b.log))
	default:
	}
	return b
}

func (b *loopbackBox) proxyAddr() string { return fmt.Sprintf("127.0.0.1:%d", b.proxy) }

// status returns a field of /proc/PID/status in its unit (kB for VmRSS).
func (b *loopbackBox) status(t *testing.T, field string) int64 {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", b.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			n, err := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, b.cmd.Process.Pid)
	return 0
}

// TestCase18SlowReader is the faults catalog's case 18: a server sends as fast as it can
// while the device reads slowly, and for a while not at all. The box must leave the bytes
// in the kernel's socket buffers (TCP's backpressure) rather than its own memory: its RSS,
// read from /proc, stays flat while the whole download passes through it.
func TestCase18SlowReader(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the lnm binary and moves a gigabyte through it")
	}
	size := int64(1 << 30)
	rate := int64(96 << 20) // bytes a second the device reads
	if raceEnabled {
		size, rate = 128<<20, 16<<20
	}
	ca := testkit.NewCA(t)
	cert := ca.Issue(t, "big.test")
	var served sync.WaitGroup
	var sent atomic.Int64 // bytes the server has handed to its socket
	upstream := testkit.ServeTLS(t, "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}}, func(c *tls.Conn) {
		served.Add(1)
		defer served.Done()
		buf := make([]byte, 256<<10)
		for sent.Load() < size {
			n, err := c.Write(buf)
			sent.Add(int64(n))
			if err != nil {
				return
			}
		}
		c.CloseWrite()
		io.Copy(io.Discard, c)
	})
	bin := buildLNM(t)
	box := startLoopbackBox(t, bin, []string{fmt.Sprintf("big.test PROXY to 127.0.0.1:%d", upstream.Port())}, nil, nil)

	c, err := tls.Dial("tcp", box.proxyAddr(), ca.Client("big.test"))
	if err != nil {
		t.Fatalf("TLS through the box: %v\n%s", err, readFile(box.log))
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Minute))

	buf := make([]byte, 64<<10)
	var got int64
	readUpTo := func(n int64) error {
		for got < n {
			k, err := c.Read(buf[:min(int64(len(buf)), n-got)])
			got += int64(k)
			if err != nil {
				return err
			}
		}
		return nil
	}
	// Warm up: the first 16 MiB, then the baseline.
	if err := readUpTo(16 << 20); err != nil {
		t.Fatalf("after %d bytes: %v", got, err)
	}
	base := box.status(t, "VmRSS")
	peak := base
	// The device stops reading for 3 s: the server keeps sending until the buffers fill.
	for range 15 {
		time.Sleep(200 * time.Millisecond) // the device not reading, not synchronisation
		peak = max(peak, box.status(t, "VmRSS"))
	}
	// Backpressure reached the server: what it sent beyond what the device read fits in
	// the sockets' and the splice pipe's kernel buffers (a few MiB each on loopback).
	inFlight := sent.Load() - got
	if inFlight > 64<<20 {
		t.Errorf("while the device did not read, the server got %d MiB ahead of it: something buffers", inFlight>>20)
	}
	// Then it reads at rate, far below what the server sends.
	start, from := time.Now(), got
	for got < size {
		next := min(size, got+4<<20)
		if err := readUpTo(next); err != nil {
			break
		}
		peak = max(peak, box.status(t, "VmRSS"))
		if ahead := time.Duration(got-from) * time.Second / time.Duration(rate); ahead > time.Since(start) {
			time.Sleep(ahead - time.Since(start)) // pacing the device, not synchronisation
		}
	}
	if _, err := c.Read(buf); !errors.Is(err, io.EOF) || got != size {
		t.Fatalf("read %d of %d bytes, then %v; want all of them, then EOF", got, size, err)
	}
	c.Close()
	served.Wait()
	grew := peak - base
	t.Logf("%d MiB through the box to a slow reader: VmRSS %d KiB after warm-up, peak %d KiB (+%d KiB); %d KiB in flight while it did not read",
		size>>20, base, peak, grew, inFlight>>10)
	if grew > 16<<10 {
		t.Errorf("the box's RSS grew by %d KiB while a slow reader downloaded %d MiB: it buffers in user space", grew, size>>20)
	}
}

// TestCase18ManySlowReaders is case 18 across many connections: 200 devices open a stream
// each and do not read while their servers send 2 MiB each. The box's RSS per stalled
// stream stays within what the catalog allows a splice (32 KiB a direction) plus the
// bookkeeping of a connection, and far below what the servers sent, which waits in kernel
// socket buffers; then every device reads its 2 MiB in full.
func TestCase18ManySlowReaders(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the lnm binary and holds hundreds of streams")
	}
	const conns, each = 200, 2 << 20
	ca := testkit.NewCA(t)
	var sent atomic.Int64
	upstream := testkit.ServeTLS(t, "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{ca.Issue(t, "big.test")}}, func(c *tls.Conn) {
		buf := make([]byte, 64<<10)
		for n := 0; n < each; n += len(buf) {
			if _, err := c.Write(buf); err != nil {
				return
			}
			sent.Add(int64(len(buf)))
		}
		c.CloseWrite()
		io.Copy(io.Discard, c)
	})
	bin := buildLNM(t)
	box := startLoopbackBox(t, bin, []string{fmt.Sprintf("big.test PROXY to 127.0.0.1:%d", upstream.Port())},
		[]string{"conn_rate_limit off", "max_conns_per_source off"}, nil) // one test client opens them all

	dial := func() *tls.Conn {
		c, err := tls.Dial("tcp", box.proxyAddr(), ca.Client("big.test"))
		if err != nil {
			t.Fatalf("TLS through the box: %v\n%s", err, readFile(box.log))
		}
		return c
	}
	warm := dial() // a first stream, read in full, before the baseline
	if n, err := io.Copy(io.Discard, warm); n != each || err != nil {
		t.Fatalf("warm-up stream: %d bytes, %v", n, err)
	}
	warm.Close()
	sent.Store(0)
	base := box.status(t, "VmRSS")

	streams := make([]*tls.Conn, conns)
	for i := range streams {
		streams[i] = dial()
		defer streams[i].Close()
	}
	// Wait until the servers are held back: nothing more sent for a second.
	var last int64 = -1
	if !waitFor(60*time.Second, func() bool {
		now := sent.Load()
		settled := now == last
		last = now
		if !settled {
			time.Sleep(time.Second) // the settling window, not synchronisation
		}
		return settled
	}) {
		t.Fatalf("the servers kept sending for 60 s: %d MiB", sent.Load()>>20)
	}
	rss := box.status(t, "VmRSS")
	per := (rss - base) / conns
	t.Logf("%d stalled streams: the servers sent %d MiB and are held back; VmRSS %d KiB → %d KiB, %d KiB a stream",
		conns, last>>20, base, rss, per)
	perLimit, shareLimit := int64(128), int64(10) // KiB a stream; a tenth of what was sent
	if raceEnabled {
		perLimit, shareLimit = 512, 4 // the race detector's shadow memory grows with every goroutine
	}
	if per > perLimit {
		t.Errorf("the box's RSS grew by %d KiB a stalled stream: it buffers more than 2 × 32 KiB plus a connection's keep", per)
	}
	// The 400 MiB the servers sent sit in kernel socket buffers, not in the box.
	if grew := (rss - base) << 10; grew > last/shareLimit {
		t.Errorf("the box grew by %d MiB of the %d MiB sent to devices that did not read", grew>>20, last>>20)
	}
	for i, c := range streams {
		c.SetDeadline(time.Now().Add(60 * time.Second))
		if n, err := io.Copy(io.Discard, c); n != each || err != nil {
			t.Fatalf("stream %d, once read: %d of %d bytes, %v", i, n, each, err)
		}
	}
}
