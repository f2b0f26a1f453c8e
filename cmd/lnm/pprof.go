package main

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
)

// pprofAddr checks the hidden `lnm run --pprof ADDR` flag: an address and port on loopback,
// never a plant network (the profiles show the process's memory and its goroutines' stacks).
func pprofAddr(s string) (netip.AddrPort, error) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("--pprof %q: want a loopback address and port such as 127.0.0.1:6060: %w", s, err)
	}
	if !ap.Addr().IsLoopback() {
		return netip.AddrPort{}, fmt.Errorf("--pprof %s: only a loopback address may serve profiles", s)
	}
	return ap, nil
}

// servePprof serves net/http/pprof's handlers on ap (for profiling a running box: `go tool
// pprof http://ADDR/debug/pprof/heap`) until the process exits.
func servePprof(ap netip.AddrPort, log *slog.Logger) error {
	ln, err := net.Listen("tcp", ap.String())
	if err != nil {
		return fmt.Errorf("--pprof: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	log.Info("serving profiles", "addr", ln.Addr().String())
	go http.Serve(ln, mux)
	return nil
}
