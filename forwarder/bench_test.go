package forwarder_test

import (
	"io"
	"net"
	"net/netip"
	"testing"

	"github.com/lnm-project/lnm/allowlist"
	"github.com/lnm-project/lnm/forwarder"
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
