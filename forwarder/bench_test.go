package forwarder_test

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lnm-project/lnm/allowlist"
	"github.com/lnm-project/lnm/forwarder"
	"github.com/lnm-project/lnm/httpfront"
	"github.com/lnm-project/lnm/internal/testkit"
)

// BenchmarkSplice measures the throughput of one stream through the forwarder: a device
// sends a hello and then b.N bytes, which a sink upstream reads and discards.
func BenchmarkSplice(b *testing.B) {
	sink := testkit.Serve(b, "127.0.0.1:0", func(c net.Conn) { io.Copy(io.Discard, c) })
	port := testkit.FreePort(b)
	f, err := forwarder.New(forwarder.Config{
		Listen: netip.MustParseAddr("127.0.0.1"),
		Ports:  []forwarder.PortMap{{Listen: port, Upstream: sink.Port()}},
		List:   rules(b, "bulk.example.test"),
		Parent: netip.MustParseAddr("127.0.0.1"),
	})
	if err != nil {
		b.Fatal(err)
	}
	if err := f.Start(); err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	hello := rawHello(b, "bulk.example.test")
	c, err := net.Dial("tcp", f.Addrs()[0].String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(hello); err != nil {
		b.Fatal(err)
	}
	chunk := make([]byte, 256<<10)
	b.SetBytes(int64(len(chunk)))
	b.ResetTimer()
	for range b.N {
		if _, err := c.Write(chunk); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecide(b *testing.B) {
	pol := &allowlist.Policy{List: rules(b, ".contoso.test", "*.azure.test", "mqtt.vendor.test 8883", "opcua.vendor.test 443 from 198.18.3.20/32")}
	src := netip.MustParseAddr("198.18.3.20")
	b.ReportAllocs()
	for b.Loop() {
		forwarder.Decide(pol, allowlist.Name("a.b.azure.test"), 443, src, true)
	}
}

// BenchmarkConnectPath measures a whole CONNECT through the box, as curl's proxy use makes
// it: connect, CONNECT head, 200, ClientHello checked against the CONNECT's name, dial,
// replay; the upstream reads the hello and closes.
func BenchmarkConnectPath(b *testing.B) {
	hello := rawHello(b, "api.contoso.test")
	sink := testkit.Serve(b, "127.0.0.1:0", func(c net.Conn) {
		io.ReadFull(c, make([]byte, len(hello)))
	})
	port := testkit.FreePort(b)
	f, err := forwarder.New(forwarder.Config{
		Listen:   netip.MustParseAddr("127.0.0.1"),
		Ports:    []forwarder.PortMap{{Listen: port, Front: forwarder.FrontConnect}},
		List:     rules(b, ".contoso.test"),
		Parent:   netip.MustParseAddr("127.0.0.1"),
		ConnRate: -1,
	})
	if err != nil {
		b.Fatal(err)
	}
	if err := f.Start(); err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	req := []byte(fmt.Sprintf("CONNECT api.contoso.test:%d HTTP/1.1\r\nHost: api.contoso.test:%d\r\n\r\n", sink.Port(), sink.Port()))
	reply := make([]byte, len(httpfront.Established))
	for b.Loop() {
		c, err := net.Dial("tcp", f.Addrs()[0].String())
		if err != nil {
			b.Fatal(err)
		}
		c.Write(req)
		if _, err := io.ReadFull(c, reply); err != nil {
			b.Fatal(err)
		}
		c.Write(hello)
		io.Copy(io.Discard, c) // until the sink closes
		c.Close()
	}
}

// BenchmarkIdleStreams opens b.N streams (a hello through to an upstream, then silence) and
// reports what each idle one costs the process once they settled: heap and stack bytes and
// goroutines per stream. The devices and the upstream are in this process too but hold no
// goroutine of their own, only their sockets (two more per stream). Run it with a count,
// e.g. -benchtime 2000x: each stream takes four descriptors.
func BenchmarkIdleStreams(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	var held []net.Conn // the upstream's ends, held without a goroutine each
	accepted := make(chan struct{})
	go func() {
		defer close(accepted)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
		}
	}()
	port := testkit.FreePort(b)
	var opened atomic.Int64
	f, err := forwarder.New(forwarder.Config{
		Listen:   netip.MustParseAddr("127.0.0.1"),
		Ports:    []forwarder.PortMap{{Listen: port, Upstream: uint16(ln.Addr().(*net.TCPAddr).Port)}},
		List:     rules(b, "idle.example.test"),
		Parent:   netip.MustParseAddr("127.0.0.1"),
		MaxConns: -1, MaxConnsPerSrc: -1, ConnRate: -1, MaxPending: -1,
		OnEvent: func(ev forwarder.Event) error {
			if ev.Kind == forwarder.EventOpen {
				opened.Add(1)
			}
			return nil
		},
	})
	if err != nil {
		b.Fatal(err)
	}
	if err := f.Start(); err != nil {
		b.Fatal(err)
	}
	hello := rawHello(b, "idle.example.test")
	before, goroutines := settled()
	var devices []net.Conn
	b.ReportAllocs()
	for b.Loop() {
		c, err := net.Dial("tcp", f.Addrs()[0].String())
		if err != nil {
			b.Fatal(err)
		}
		if _, err := c.Write(hello); err != nil {
			b.Fatal(err)
		}
		devices = append(devices, c)
	}
	b.StopTimer()
	for end := time.Now().Add(60 * time.Second); opened.Load() < int64(len(devices)); {
		if time.Now().After(end) {
			b.Fatalf("%d of %d streams opened in 60s", opened.Load(), len(devices))
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(time.Second) // past the park delay: this is what is measured, not a sync
	after, goroutinesAfter := settled()
	n := float64(len(devices))
	b.ReportMetric(float64(after.HeapInuse-before.HeapInuse)/n, "heap-B/stream")
	b.ReportMetric(float64(after.StackInuse-before.StackInuse)/n, "stack-B/stream")
	b.ReportMetric(float64(goroutinesAfter-goroutines)/n, "goroutines/stream")
	for _, c := range devices {
		c.Close()
	}
	f.Close()
	ln.Close()
	<-accepted
	for _, c := range held {
		c.Close()
	}
}

// settled returns the memory statistics and goroutine count after two collections.
func settled() (runtime.MemStats, int) {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m, runtime.NumGoroutine()
}
