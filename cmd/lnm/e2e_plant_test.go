package main

// The plant side of examples/level3.conf, which the other lab tests send no traffic through:
// the stub zone plant.internal (the plant's own DNS server), the static route `tcp 1883` to a
// broker named in that zone, and the east-west rule that sends historian.plant.test to a
// fixed inside address. The plant's DNS server and broker run in the device namespace (they
// sit on the device network, as a plant's do), the historian on the level-3/level-4 link.

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/lnm-project/lnm/audit"
)

// The plant's hosts. examples/level3.conf names the DNS server and the historian's address.
const (
	plantDNS       = "198.18.3.2"
	plantBroker    = "198.18.3.30"
	plantHistAddr  = "198.18.4.20"
	plantHistorian = "historian.plant.test"
)

// runPlant is the plant's DNS server (authoritative for plant.internal) and its MQTT broker
// stand-in, a line echo on 1883.
func runPlant(dir string) error {
	mux := dns.NewServeMux()
	mux.HandleFunc("plant.internal.", func(w dns.ResponseWriter, req *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(req)
		m.Authoritative = true
		q := req.Question[0]
		switch strings.ToLower(q.Name) {
		case "broker.plant.internal.":
			if q.Qtype == dns.TypeA {
				m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: net.ParseIP(plantBroker)})
			}
		default:
			m.Rcode = dns.RcodeNameError
		}
		w.WriteMsg(m)
	})
	for _, netw := range []string{"udp", "tcp"} {
		s := &dns.Server{Addr: plantDNS + ":53", Net: netw, Handler: mux}
		go s.ListenAndServe()
	}
	ln, err := net.Listen("tcp", plantBroker+":1883")
	if err != nil {
		return err
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				line, _ := bufio.NewReader(c).ReadString('\n')
				fmt.Fprintf(c, "broker %s got %s", c.LocalAddr(), line)
			}()
		}
	}()
	return waitReady(dir, "plant", "udp", plantDNS+":53")
}

// runHistorian is the east-west HTTPS server on the level-3/level-4 link.
func runHistorian(dir string) error {
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, plantHistorian+".pem"), filepath.Join(dir, plantHistorian+"-key.pem"))
	if err != nil {
		return err
	}
	ln, err := tls.Listen("tcp", plantHistAddr+":443", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "historian sni=%s local=%s\n", r.TLS.ServerName, plantHistAddr)
	})}
	go srv.Serve(ln)
	return waitReady(dir, "historian", "", "")
}

// waitReady checks a DNS server answers (when addr is set), writes MODE.ready and waits for
// the lab's SIGTERM, which ends the helper cleanly.
func waitReady(dir, mode, netw, addr string) error {
	if addr != "" {
		deadline := time.Now().Add(5 * time.Second)
		for {
			c := &dns.Client{Net: netw, Timeout: 200 * time.Millisecond}
			if _, _, err := c.Exchange(new(dns.Msg).SetQuestion("broker.plant.internal.", dns.TypeA), addr); err == nil {
				break
			} else if time.Now().After(deadline) {
				return err
			}
		}
	}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM)
	if err := os.WriteFile(filepath.Join(dir, mode+".ready"), nil, 0o644); err != nil {
		return err
	}
	<-stop
	return nil
}

func TestE2EPlant(t *testing.T) {
	requireLab(t)
	bin := buildLNM(t)
	l := newLab(t)
	l.dumpLogsOnFailure()
	l.startInet()
	l.addr("dev", "to-l3", plantDNS+"/24", plantBroker+"/24")
	l.addr("l4", "to-l3", plantHistAddr+"/24")
	l.startHelper("dev", "plant")
	l.startHelper("l4", "historian")
	level4 := addDirectives(t, exampleConfig(t, "level4.conf"), "children "+l3UpAddr)
	l.startBox(bin, "l4", level4, l4DownAddr)
	l.startBox(bin, "l3", exampleConfig(t, "level3.conf"), l3DownAddr)

	t.Run("stub zone", func(t *testing.T) {
		r, out, err := l.dig("dev", l3DownAddr, "broker.plant.internal", "A")
		if err != nil || r.status != "NOERROR" || len(r.answers) != 1 || r.answers[0] != plantBroker {
			t.Fatalf("broker.plant.internal through the box: %v\n%s", err, out)
		}
		r, out, err = l.dig("dev", l3DownAddr, "nothing.plant.internal", "A")
		if err != nil || r.status != "NXDOMAIN" {
			t.Errorf("the plant's NXDOMAIN is relayed as is: %v\n%s", err, out)
		}
	})
	t.Run("tcp route", func(t *testing.T) {
		// The device talks to the box; the box resolves the broker in the zone and connects.
		out, errOut, err := l.run("dev", "sh", "-c", "printf 'hello-broker\\n' | timeout 5 busybox nc "+l3DownAddr+" 1883")
		if err != nil || !strings.Contains(out, "broker "+plantBroker+":1883 got hello-broker") {
			t.Fatalf("tcp 1883 through the box: %v\nout: %s\nerr: %s", err, out, errOut)
		}
	})
	t.Run("east-west to", func(t *testing.T) {
		body, errOut, err := l.curl("dev", "https://"+plantHistorian+"/")
		if err != nil || !strings.Contains(body, "historian sni="+plantHistorian+" local="+plantHistAddr) {
			t.Fatalf("curl https://%s/ through the box: %v\nbody: %s\nstderr: %s", plantHistorian, err, body, errOut)
		}
	})
	t.Run("records", func(t *testing.T) {
		var route, to, zone bool
		waitFor(5*time.Second, func() bool {
			route, to, zone = false, false, false
			for _, r := range l.auditQuery(bin, "l3") {
				switch {
				case r.Kind == audit.KindConn && r.Event == "open" && r.Port == 1883 && r.Via == "tcp":
					route = r.Upstream.Addr().String() == plantBroker
				case r.Kind == audit.KindConn && r.Event == "open" && r.SNI == plantHistorian && r.Via == "to":
					to = r.Upstream.Addr().String() == plantHistAddr
				case r.Kind == audit.KindDNS && r.Name == "broker.plant.internal" && r.Verdict == audit.VerdictAllow:
					// A stub zone's answer is relayed and recorded as allowed, with the plant's answer.
					zone = slices.Contains(r.Answer, netip.MustParseAddr(plantBroker))
				}
			}
			return route && to && zone
		})
		if !route || !to || !zone {
			t.Errorf("level 3's records: route to the broker %v, east-west to the historian %v, zone answer %v", route, to, zone)
		}
	})
}
