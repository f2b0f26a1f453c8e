package resolver

import (
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// The bucket: rate queries at once, then rate a second; over it, every second query slips
// and the others drop; a summary says so once and forgets idle clients.
func TestLimiterBucket(t *testing.T) {
	l := newLimiter(10)
	a := netip.MustParseAddr("198.18.3.20")
	b := netip.MustParseAddr("198.18.3.21")
	t0 := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC).UnixNano()
	for i := range 10 {
		if v := l.take(a, t0); v != limitPass {
			t.Fatalf("query %d of the burst: %v", i, v)
		}
	}
	want := []limitVerdict{limitDrop, limitTruncate, limitDrop, limitTruncate}
	for i, w := range want {
		if v := l.take(a, t0); v != w {
			t.Fatalf("query %d over the limit: %v, want %v", i, v, w)
		}
	}
	if v := l.take(b, t0); v != limitPass {
		t.Errorf("another client is limited: %v", v)
	}
	// Half a second refills five.
	half := t0 + int64(500*time.Millisecond)
	for i := range 5 {
		if v := l.take(a, half); v != limitPass {
			t.Fatalf("query %d after refill: %v", i, v)
		}
	}
	if v := l.take(a, half); v == limitPass {
		t.Fatal("a sixth query passed half a second later")
	}
	evs := l.summarize(half)
	if len(evs) != 1 {
		t.Fatalf("summary %+v, want one event", evs)
	}
	ev := evs[0]
	if ev.Client != a || ev.Dropped != 3 || ev.Slipped != 2 || ev.From.UnixNano() != t0 || ev.Until.UnixNano() != half {
		t.Errorf("event %+v, want client %v, 3 dropped, 2 slipped, from t0 until half a second later", ev, a)
	}
	if evs := l.summarize(half); len(evs) != 0 {
		t.Errorf("second summary repeats: %+v", evs)
	}
	// A second later both buckets are full again and forgotten.
	l.summarize(half + int64(2*time.Second))
	if n := len(l.clients); n != 0 {
		t.Errorf("%d idle clients still tracked", n)
	}
}

// The table of clients is bounded: past it, new clients are not limited (a flood with a
// forged source per packet stays within every source's limit anyway).
func TestLimiterBounded(t *testing.T) {
	l := newLimiter(1)
	now := time.Now().UnixNano()
	for i := range limitMaxClients + 10 {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		l.take(a, now)
	}
	if n := len(l.clients); n != limitMaxClients {
		t.Errorf("%d clients tracked, bound %d", n, limitMaxClients)
	}
}

// A client flooding over UDP gets at most its rate answered, every second query over it an
// empty TC reply, and the rest nothing; OnQuery hears only the answered ones, OnLimited one
// summary with the rest at Close. Another client, and the same client over TCP, are served.
func TestRateLimitUDP(t *testing.T) {
	const rate, sent = 50, 400
	var answered atomic.Int64
	var mu sync.Mutex
	var events []LimitEvent
	s, err := New(Config{
		Addr:      loopback,
		List:      mustList(t, "api.example.com"),
		RateLimit: rate,
		OnQuery: func(ev QueryEvent) error {
			answered.Add(1)
			return nil
		},
		OnLimited: func(ev LimitEvent) {
			mu.Lock()
			events = append(events, ev)
			mu.Unlock()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	closed := false
	defer func() {
		if !closed {
			s.Close()
		}
	}()
	srv := net.UDPAddrFromAddrPort(s.Addr())

	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var ok, tc atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 1500)
		for {
			conn.SetReadDeadline(time.Now().Add(time.Second))
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			var m dns.Msg
			if err := m.Unpack(buf[:n]); err != nil {
				t.Errorf("reply: %v", err)
				continue
			}
			switch {
			case m.Truncated && len(m.Answer) == 0:
				tc.Add(1)
			case m.Rcode == dns.RcodeSuccess && len(m.Answer) == 1:
				ok.Add(1)
			default:
				t.Errorf("unexpected reply %v", &m)
			}
		}
	}()
	start := time.Now()
	for i := range sent {
		req := new(dns.Msg).SetQuestion("api.example.com.", dns.TypeA)
		req.Id = uint16(i)
		wire, _ := req.Pack()
		if _, err := conn.WriteToUDP(wire, srv); err != nil {
			t.Fatal(err)
		}
		if i%20 == 19 {
			time.Sleep(time.Millisecond) // within the sockets' buffers, so none is lost there
		}
	}
	elapsed := time.Since(start)
	<-done

	// Another client, and the flooding client over TCP, are answered.
	other, _, err := (&dns.Client{Net: "udp", Timeout: 5 * time.Second, Dialer: &net.Dialer{
		LocalAddr: &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2)}}}).Exchange(
		new(dns.Msg).SetQuestion("api.example.com.", dns.TypeA), s.Addr().String())
	if err != nil || other.Rcode != dns.RcodeSuccess || len(other.Answer) != 1 {
		t.Errorf("another client: %v, %v", other, err)
	}
	if r := ask(t, "tcp", s.Addr(), new(dns.Msg).SetQuestion("api.example.com.", dns.TypeA)); len(r.Answer) != 1 {
		t.Errorf("over TCP: %v", r)
	}

	maxOK := int64(rate + rate*elapsed.Seconds() + 1)
	if got := ok.Load(); got < rate || got > maxOK {
		t.Errorf("%d of %d queries answered in %v, want %d to %d", got, sent, elapsed, rate, maxOK)
	}
	limited := sent - ok.Load()
	if got := tc.Load(); got < limited/2-1 || got > limited/2+1 {
		t.Errorf("%d TC replies for %d limited queries, want half", got, limited)
	}
	if ok.Load()+tc.Load() < sent/2 {
		t.Fatalf("only %d replies to %d queries: packets were lost before the server", ok.Load()+tc.Load(), sent)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	closed = true
	mu.Lock()
	defer mu.Unlock()
	var dropped, slipped uint64
	for _, ev := range events {
		if ev.Client != netip.MustParseAddr("127.0.0.1") {
			t.Errorf("limited %v", ev.Client)
		}
		dropped += ev.Dropped
		slipped += ev.Slipped
	}
	if int64(dropped+slipped) != limited || int64(slipped) != tc.Load() {
		t.Errorf("summaries count %d dropped and %d slipped; the client saw %d limited, %d TC", dropped, slipped, limited, tc.Load())
	}
	if got := answered.Load(); got != ok.Load()+2 {
		t.Errorf("OnQuery heard %d queries, %d were answered (and 2 from elsewhere)", got, ok.Load())
	}
}

// BenchmarkLimiterTake is the rate limit's cost per UDP query: one client within its limit,
// and 1,000 clients in turn.
func BenchmarkLimiterTake(b *testing.B) {
	for _, clients := range []int{1, 1000} {
		b.Run(fmt.Sprint(clients, "_clients"), func(b *testing.B) {
			l := newLimiter(1 << 30)
			addrs := make([]netip.Addr, clients)
			for i := range addrs {
				addrs[i] = netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)})
			}
			now := time.Now().UnixNano()
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if l.take(addrs[i%clients], now+int64(i)) != limitPass {
					b.Fatal("limited")
				}
				i++
			}
		})
	}
}
