package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat; it is 100 on every
// Linux architecture Debian ships.
const clockTicks = 100

// daemon is one contender's process, started in the foreground by the harness so its PID is
// ours to stop. The zero value is no process.
type daemon struct {
	name string
	cmd  *exec.Cmd
	log  string // the file its stdout and stderr go to
}

// startDaemon starts argv in its own process group with output to dir/name.log. The harness
// stops it by PID (stop), never by name.
func startDaemon(dir, name string, argv ...string) (*daemon, error) {
	logPath := filepath.Join(dir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("bench: start %s: %w", name, err)
	}
	defer f.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("bench: start %s: %w", name, err)
	}
	return &daemon{name: name, cmd: cmd, log: logPath}, nil
}

// pid is the process whose tree is measured.
func (d *daemon) pid() int { return d.cmd.Process.Pid }

// stop sends SIGTERM to the daemon's process group (it and the workers it forked), waits up
// to five seconds, then SIGKILLs the group. A nil daemon is a no-op.
func (d *daemon) stop() {
	if d == nil || d.cmd.Process == nil {
		return
	}
	pgid := d.pid()
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = d.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-done
	}
	// Workers that outlived their parent are still in the group.
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
}

// tail is the last lines of the daemon's log, for error messages.
func (d *daemon) tail() string {
	b, _ := os.ReadFile(d.log)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 8 {
		lines = lines[len(lines)-8:]
	}
	return strings.Join(lines, "\n")
}

// procStat is the part of /proc/PID/stat the harness reads.
type procStat struct {
	ppid int
	cpu  time.Duration // utime+stime+cutime+cstime: the process and its reaped children
}

func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStat{}, err
	}
	return parseStat(b)
}

// parseStat reads ppid and CPU times from a /proc/PID/stat line. The command name in
// parentheses may hold spaces and parentheses, so fields are counted after the last ')'.
func parseStat(b []byte) (procStat, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, errors.New("bench: /proc stat without a command name")
	}
	f := strings.Fields(string(b[i+1:]))
	// After the name: state(3) ppid(4) ... utime(14) stime(15) cutime(16) cstime(17).
	if len(f) < 15 {
		return procStat{}, fmt.Errorf("bench: /proc stat has %d fields after the name", len(f))
	}
	ppid, err := strconv.Atoi(f[1])
	if err != nil {
		return procStat{}, fmt.Errorf("bench: /proc stat ppid: %w", err)
	}
	var ticks int64
	for _, s := range f[11:15] {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return procStat{}, fmt.Errorf("bench: /proc stat times: %w", err)
		}
		ticks += n
	}
	return procStat{ppid: ppid, cpu: time.Duration(ticks) * time.Second / clockTicks}, nil
}

// tree lists pid and every live descendant of it (nginx's workers, sniproxy's resolver).
func tree(pid int) []int {
	entries, _ := os.ReadDir("/proc")
	children := map[int][]int{}
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, err := readStat(p); err == nil {
			children[st.ppid] = append(children[st.ppid], p)
		}
	}
	out := []int{pid}
	for i := 0; i < len(out); i++ {
		out = append(out, children[out[i]]...)
	}
	return out
}

// usage is what the harness measures of a contender's process tree at one moment.
type usage struct {
	cpu time.Duration // user+system CPU of the tree, reaped children included
	rss int64         // resident bytes, summed over the tree
	fds int           // open file descriptors, summed over the tree
}

// measure reads the CPU, resident memory and open files of pid and its descendants.
func measure(pid int) usage {
	var u usage
	for _, p := range tree(pid) {
		if st, err := readStat(p); err == nil {
			u.cpu += st.cpu
		}
		u.rss += vmRSS(p)
		if fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", p)); err == nil {
			u.fds += len(fds)
		}
	}
	return u
}

// vmRSS is the VmRSS line of /proc/PID/status in bytes, 0 if unreadable.
func vmRSS(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb * 1024
		}
	}
	return 0
}

// rlimitNOFILE is this process's open-file limit, which every contender inherits.
func rlimitNOFILE() uint64 {
	var lim syscall.Rlimit
	_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim)
	return lim.Cur
}
