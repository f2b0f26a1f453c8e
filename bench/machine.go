package main

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"syscall"
)

// machine describes where the run happened: the CPU model, its cores and the kernel.
func machine() string {
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	var u syscall.Utsname
	kernel := "unknown kernel"
	if syscall.Uname(&u) == nil {
		kernel = utsString(u.Release[:])
	}
	mem := ""
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		if line, _, ok := strings.Cut(string(b), "\n"); ok {
			mem = ", " + strings.Join(strings.Fields(strings.TrimPrefix(line, "MemTotal:")), " ") + " RAM"
		}
	}
	return fmt.Sprintf("%s, %d cores, Linux %s%s, %s", model, runtime.NumCPU(), kernel, mem, runtime.Version())
}

func utsString(b []int8) string {
	var s strings.Builder
	for _, c := range b {
		if c == 0 {
			break
		}
		s.WriteByte(byte(c))
	}
	return s.String()
}
