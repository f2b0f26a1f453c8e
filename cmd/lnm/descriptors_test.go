package main

import (
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/sys/unix"

	"github.com/lnm-project/lnm/internal/testkit"
)

// cpuTime is the user and system time the process has used, from /proc/PID/stat.
func cpuTime(t *testing.T, pid int) time.Duration {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// The command name, in parentheses, may hold spaces: fields count from after it.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	utime, _ := strconv.ParseInt(f[11], 10, 64) // field 14 of the whole line
	stime, _ := strconv.ParseInt(f[12], 10, 64) // field 15
	const ticks = 100                           // USER_HZ on Linux
	return time.Duration(utime+stime) * time.Second / ticks
}

// echoLine sends msg on c and reads the echo server's reply to it.
func echoLine(c net.Conn, name, msg string) error {
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.Write([]byte(msg)); err != nil {
		return err
	}
	want := name + ":" + msg
	buf := make([]byte, len(want))
	for n := 0; n < len(want); {
		k, err := c.Read(buf[n:])
		n += k
		if err != nil {
			return fmt.Errorf("after %q: %w", buf[:n], err)
		}
	}
	if string(buf) != want {
		return fmt.Errorf("echo %q, want %q", buf, want)
	}
	return nil
}

// TestCase19ProxyOutOfDescriptors is the faults catalog's case 19 on the proxy listener of
// the built lnm: its RLIMIT_NOFILE is lowered (prlimit) to a few descriptors above what it
// holds, and silent connections fill the rest. While accept fails, the box does not spin
// (CPU time from /proc measured over two seconds), a splice made before keeps working, DNS
// over UDP answers, and a new device waits in the backlog; when the silent connections go,
// the box accepts again and that device is served.
func TestCase19ProxyOutOfDescriptors(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the lnm binary")
	}
	ca := testkit.NewCA(t)
	echo := testkit.TLSEcho(t, "127.0.0.1:0", ca.Issue(t, "echo.test"))
	bin := buildLNM(t)
	box := startLoopbackBox(t, bin,
		[]string{fmt.Sprintf("echo.test PROXY to 127.0.0.1:%d", echo.Port())},
		[]string{"hello_timeout 2m"}, // the silent connections hold their descriptors
		nil)
	pid := box.cmd.Process.Pid

	// A splice made before the table fills.
	early, err := tls.Dial("tcp", box.proxyAddr(), ca.Client("echo.test"))
	if err != nil {
		t.Fatal(err)
	}
	defer early.Close()
	if err := echoLine(early, "echo.test", "before"); err != nil {
		t.Fatal(err)
	}

	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	lim := unix.Rlimit{Cur: uint64(len(fds) + 16), Max: uint64(len(fds) + 16)}
	if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, &lim, nil); err != nil {
		t.Fatalf("prlimit: %v", err)
	}
	t.Logf("lnm holds %d descriptors; RLIMIT_NOFILE lowered to %d", len(fds), lim.Cur)

	// Silent connections until the box says it is out of descriptors.
	var silent []net.Conn
	defer func() {
		for _, c := range silent {
			c.Close()
		}
	}()
	exhausted := func() bool { return strings.Contains(readFile(box.log), "out of file descriptors") }
	for i := 0; !exhausted(); i++ {
		if i == 200 {
			t.Fatalf("200 silent connections and the box never ran out of descriptors\n%s", readFile(box.log))
		}
		c, err := net.DialTimeout("tcp", box.proxyAddr(), 10*time.Second)
		if err != nil {
			t.Fatalf("silent connection %d: %v", i, err)
		}
		silent = append(silent, c)
		if i > 16 {
			waitFor(time.Second, exhausted) // give the accept loop its turn
		}
	}
	t.Logf("out of descriptors after %d silent connections", len(silent))

	// A new device: its connection completes in the kernel and waits in the backlog.
	type result struct {
		c   *tls.Conn
		err error
	}
	late := make(chan result, 1)
	go func() {
		d := &net.Dialer{Timeout: 30 * time.Second}
		c, err := tls.DialWithDialer(d, "tcp", box.proxyAddr(), ca.Client("echo.test"))
		late <- result{c, err}
	}()

	before := cpuTime(t, pid)
	wall := time.Now()
	time.Sleep(2 * time.Second) // the measuring window, not synchronisation
	cpu, elapsed := cpuTime(t, pid)-before, time.Since(wall)
	t.Logf("lnm used %v of CPU in %v out of descriptors", cpu, elapsed.Round(time.Millisecond))
	if cpu > elapsed/4 {
		t.Errorf("lnm used %v of CPU in %v while out of descriptors: its accept loop spins", cpu, elapsed)
	}

	if err := echoLine(early, "echo.test", "during"); err != nil {
		t.Errorf("the splice made before, while out of descriptors: %v", err)
	}
	dc := &dns.Client{Timeout: 5 * time.Second}
	if r, _, err := dc.Exchange(new(dns.Msg).SetQuestion("echo.test.", dns.TypeA), fmt.Sprintf("127.0.0.1:%d", box.dns)); err != nil || r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
		t.Errorf("DNS over UDP while out of descriptors: %v, %v", r, err)
	}
	select {
	case r := <-late:
		t.Fatalf("the new device finished its handshake while the box could not accept: %v", r.err)
	default:
	}

	// Recovery: the silent connections go, and the device that waited is served.
	for _, c := range silent {
		c.Close()
	}
	silent = nil
	var r result
	select {
	case r = <-late:
	case <-time.After(45 * time.Second):
		t.Fatalf("the waiting device was not served within 45 s of descriptors coming back\n%s", readFile(box.log))
	}
	if r.err != nil {
		t.Fatalf("the waiting device after recovery: %v\n%s", r.err, readFile(box.log))
	}
	defer r.c.Close()
	if err := echoLine(r.c, "echo.test", "after"); err != nil {
		t.Errorf("the waiting device after recovery: %v", err)
	}
	if err := echoLine(early, "echo.test", "still"); err != nil {
		t.Errorf("the early splice after recovery: %v", err)
	}
	if !waitFor(10*time.Second, func() bool { return strings.Contains(readFile(box.log), "accepting again") }) {
		t.Errorf("the box did not log that it accepts again\n%s", readFile(box.log))
	}
}
