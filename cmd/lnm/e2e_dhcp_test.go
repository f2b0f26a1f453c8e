package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lnm-project/lnm/adminapi"
	"github.com/lnm-project/lnm/audit"
)

// The DHCP lab: a device namespace whose only interface has no address, joined by a veth
// to the box's namespace, where lnm serves DHCP on the box's end (198.18.3.0/24). Real DHCP
// clients (busybox udhcpc, ISC dhclient) run in the device namespace with scripts of this
// test that only set the address and write what they were told to a file: the distribution's
// scripts would rewrite /etc/resolv.conf.
//
//	dev eth0 (no address; MAC 00:1b:1b:aa:bb:07) ──▶ l3 south0 198.18.3.1/24: lnm, DNS and DHCP

const (
	plcMAC    = "00:1b:1b:aa:bb:07"
	sensorMAC = "02:00:00:00:00:42"
)

// dhcpTools are the DHCP clients, with their Debian packages.
var dhcpTools = map[string]string{"busybox": "busybox", "dhclient": "isc-dhcp-client"}

func newDHCPLab(t *testing.T) *lab {
	t.Helper()
	requireLab(t)
	for tool, pkg := range dhcpTools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s missing (apt-get install %s); .ci/run and make deps install it", tool, pkg)
		}
	}
	sweepStaleLabs(t)
	l := &lab{t: t, prefix: fmt.Sprintf("lnm-%d-%d", os.Getpid(), labSeq.Add(1)), dir: t.TempDir()}
	for _, h := range []string{"dev", "l3"} {
		ns := l.ns(h)
		if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
			t.Fatalf("cannot make network namespace %s: %v: %s", ns, err, out)
		}
		t.Cleanup(func() { l.removeNamespace(ns) })
		l.ip(h, "link", "set", "lo", "up")
	}
	l.veth("dev", "eth0", "l3", "south0")
	l.setMAC(plcMAC)
	l.addr("l3", "south0", l3DownAddr+"/24")
	// The clients' scripts never write resolv.conf, but should anything in the device
	// namespace try, it writes this copy, not the machine's.
	l.resolvConf("dev", l3DownAddr)
	return l
}

// setMAC gives the device's interface another hardware address: another device.
func (l *lab) setMAC(mac string) {
	l.t.Helper()
	l.ip("dev", "link", "set", "dev", "eth0", "down")
	l.ip("dev", "addr", "flush", "dev", "eth0")
	l.ip("dev", "link", "set", "dev", "eth0", "address", mac)
	l.ip("dev", "link", "set", "dev", "eth0", "up")
}

// clientScript writes a DHCP client script that sets the leased address and writes the
// settings it got to out, one KEY=VALUE per line.
func (l *lab) clientScript(name, body string) string {
	l.t.Helper()
	path := filepath.Join(l.dir, name)
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		l.t.Fatal(err)
	}
	return path
}

func readSettings(t *testing.T, path string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for line := range strings.Lines(readFile(path)) {
		k, v, _ := strings.Cut(strings.TrimSpace(line), "=")
		out[k] = v
	}
	return out
}

func (l *lab) dhcpLeases(bin, conf string) adminapi.DHCPLeases {
	l.t.Helper()
	out, err := exec.Command(bin, "dhcp", "leases", "--json", "--config", conf).Output()
	if err != nil {
		l.t.Fatalf("lnm dhcp leases: %v", err)
	}
	var ls adminapi.DHCPLeases
	if err := json.Unmarshal(out, &ls); err != nil {
		l.t.Fatalf("lnm dhcp leases printed %s: %v", out, err)
	}
	return ls
}

// TestE2EDHCP: a device gets its lease from the box with udhcpc, the box as its only DNS
// server and no router; its DNS query is recorded with its reserved name and MAC; a second
// device (dhclient, a pool address, the name it sends) likewise; its release is recorded;
// and the leases survive a restart of the box.
func TestE2EDHCP(t *testing.T) {
	bin := buildLNM(t)
	l := newDHCPLab(t)
	l.dumpLogsOnFailure()

	boxDir := filepath.Join(l.dir, "l3")
	conf := filepath.Join(l.dir, "l3.conf")
	text := fmt.Sprintf(`lnm {
    listen 198.18.3.1
    admin  %[1]s/admin.sock
    audit  %[1]s/audit
    allow {
        api.azure.test
    }
    dhcp south0 {
        range  198.18.3.100 198.18.3.199
        lease  1h
        host   plc-07 %[2]s 198.18.3.20
        leases %[1]s/leases.json
    }
}
`, boxDir, plcMAC)
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "check", "--config", conf).CombinedOutput(); err != nil {
		t.Fatalf("lnm check: %v\n%s", err, out)
	}
	startDHCPBox := func(name string) *proc {
		p := l.start("l3", name, nil, bin, "--log-level", "debug", "--log-format", "json", "run", "--config", conf)
		// The admin socket is made after the DHCP server is bound.
		ok := waitFor(15*time.Second, func() bool {
			if done, _ := p.exited(); done {
				return true
			}
			_, err := os.Stat(filepath.Join(boxDir, "admin.sock"))
			return err == nil && l.listening("l3", []string{l3DownAddr + ":53"}, []string{l3DownAddr + ":53"})
		})
		if done, err := p.exited(); done || !ok {
			t.Fatalf("lnm did not start (exited %v: %v)\n%s", done, err, readFile(p.log))
		}
		return p
	}
	box := startDHCPBox("lnm-l3")

	// 1. The PLC, by its reserved MAC, with busybox udhcpc. It sends a factory host name; the
	// reservation's name wins.
	udhcpcOut := filepath.Join(l.dir, "udhcpc.env")
	udhcpcScript := l.clientScript("udhcpc.sh", fmt.Sprintf(`case "$1" in
bound|renew)
	ip addr flush dev "$interface"
	ip addr add "$ip/$mask" dev "$interface"
	printf 'ip=%%s\nmask=%%s\ndns=%%s\nrouter=%%s\nlease=%%s\nserverid=%%s\n' "$ip" "$mask" "$dns" "$router" "$lease" "$serverid" > %s
	;;
esac
`, udhcpcOut))
	start := time.Now()
	l.mustRun("dev", "busybox", "udhcpc", "-i", "eth0", "-f", "-q", "-n", "-t", "5", "-T", "2",
		"-s", udhcpcScript, "-x", "hostname:factory-default")
	t.Logf("udhcpc got its lease in %v", time.Since(start).Round(time.Millisecond))
	got := readSettings(t, udhcpcOut)
	want := map[string]string{"ip": "198.18.3.20", "mask": "24", "dns": l3DownAddr, "router": "", "lease": "3600", "serverid": l3DownAddr}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("udhcpc %s = %q, want %q (all: %v)", k, got[k], v, got)
		}
	}
	if out := l.mustRun("dev", "ip", "-4", "-o", "addr", "show", "dev", "eth0"); !strings.Contains(out, "198.18.3.20/24") {
		t.Fatalf("eth0 after udhcpc: %s", out)
	}
	// The device asks the DNS server it was given.
	res, out, err := l.dig("dev", got["dns"], "api.azure.test", "A")
	if err != nil || res.status != "NOERROR" || len(res.answers) != 1 || res.answers[0] != l3DownAddr {
		t.Fatalf("dig api.azure.test from the PLC: %+v %v\n%s", res, err, out)
	}
	if res, _, _ := l.dig("dev", got["dns"], "blocked.evil.test", "A"); res.status != "NXDOMAIN" {
		t.Errorf("dig blocked.evil.test: %+v, want NXDOMAIN", res)
	}
	recs := l.auditQuery(bin, "l3", "--device", "plc-07")
	var kinds []string
	var sawQuery bool
	for _, r := range recs {
		if r.Device != "plc-07" || r.MAC != plcMAC {
			t.Errorf("record %d of --device plc-07: device %q mac %q", r.Seq, r.Device, r.MAC)
		}
		kinds = append(kinds, string(r.Kind)+":"+r.Event+r.Name)
		if r.Kind == audit.KindDNS && r.Name == "api.azure.test" && r.Client.Addr().String() == "198.18.3.20" && r.Verdict == audit.VerdictAllow {
			sawQuery = true
		}
	}
	if !sawQuery || !strings.Contains(strings.Join(kinds, " "), "dhcp:offer dhcp:ack") {
		t.Fatalf("records of plc-07: %v; want its offer, ack and the allowed query", kinds)
	}

	// 2. Another device with ISC dhclient: a pool address and the name it sends.
	l.setMAC(sensorMAC)
	dhclientOut := filepath.Join(l.dir, "dhclient.env")
	dhScript := l.clientScript("dhclient.sh", fmt.Sprintf(`case "$reason" in
PREINIT) ip link set dev "$interface" up ;;
BOUND|RENEW|REBIND|REBOOT)
	ip addr flush dev "$interface"
	ip addr add "$new_ip_address/$new_subnet_mask" dev "$interface"
	printf 'ip=%%s\nmask=%%s\ndns=%%s\nrouter=%%s\n' "$new_ip_address" "$new_subnet_mask" "$new_domain_name_servers" "$new_routers" > %s
	;;
RELEASE|STOP|EXPIRE|FAIL) ip addr flush dev "$interface" ;;
esac
`, dhclientOut))
	cf := filepath.Join(l.dir, "dhclient.conf")
	os.WriteFile(cf, []byte("send host-name \"Sensor-42\";\nrequest subnet-mask, domain-name-servers, routers, domain-name;\ntimeout 20;\n"), 0o644)
	dhArgs := []string{"-4", "-cf", cf, "-sf", dhScript, "-lf", filepath.Join(l.dir, "dhclient.leases"), "-pf", filepath.Join(l.dir, "dhclient.pid")}
	// -1: one try; without -d, dhclient stays in the background after binding, so the
	// release below (-r) is what stops it.
	l.mustRun("dev", "dhclient", append(dhArgs, "-1", "eth0")...)
	t.Cleanup(func() { l.run("dev", "dhclient", append(dhArgs, "-x", "eth0")...) })
	got = readSettings(t, dhclientOut)
	if got["ip"] != "198.18.3.100" || got["dns"] != l3DownAddr || got["router"] != "" || got["mask"] != "255.255.255.0" {
		t.Fatalf("dhclient settings %v: want 198.18.3.100/255.255.255.0, DNS %s, no router", got, l3DownAddr)
	}
	if res, out, err := l.dig("dev", l3DownAddr, "api.azure.test", "A"); err != nil || res.status != "NOERROR" {
		t.Fatalf("dig from the sensor: %+v %v\n%s", res, err, out)
	}
	recs = l.auditQuery(bin, "l3", "--device", "sensor-42", "--kind", "dns")
	if len(recs) != 1 || recs[0].MAC != sensorMAC || recs[0].Client.Addr().String() != "198.18.3.100" {
		t.Fatalf("dns records of sensor-42: %+v", recs)
	}
	leases := l.dhcpLeases(bin, conf)
	if leases.Interface != "south0" || len(leases.Leases) != 2 {
		t.Fatalf("lnm dhcp leases: %+v", leases)
	}
	for i, w := range []struct{ addr, mac, device string }{{"198.18.3.20", plcMAC, "plc-07"}, {"198.18.3.100", sensorMAC, "sensor-42"}} {
		x := leases.Leases[i]
		if x.Addr.String() != w.addr || x.MAC != w.mac || x.Device != w.device || x.State != "bound" {
			t.Errorf("lease %d: %+v, want %v bound", i, x, w)
		}
	}
	table, err := exec.Command(bin, "dhcp", "leases", "--config", conf).Output()
	if err != nil || !strings.Contains(string(table), "198.18.3.100  "+sensorMAC+"  sensor-42  bound") {
		t.Errorf("lnm dhcp leases (table): %v\n%s", err, table)
	}

	// The sensor releases its lease: recorded, and the lease is released.
	l.mustRun("dev", "dhclient", append(dhArgs, "-r", "eth0")...)
	if !waitFor(5*time.Second, func() bool {
		return len(l.auditQuery(bin, "l3", "--device", "sensor-42", "--kind", "dhcp")) >= 3
	}) {
		t.Fatalf("no release recorded: %+v", l.auditQuery(bin, "l3", "--device", "sensor-42"))
	}
	if r := l.auditQuery(bin, "l3", "--device", "sensor-42", "--kind", "dhcp"); r[len(r)-1].Event != "release" {
		t.Errorf("last dhcp record of sensor-42: %+v, want release", r[len(r)-1])
	}

	// A restart keeps the leases: the PLC's is still bound, from the lease file.
	l.stop(box)
	startDHCPBox("lnm-l3-restarted")
	leases = l.dhcpLeases(bin, conf)
	if len(leases.Leases) != 2 || leases.Leases[0].Device != "plc-07" || leases.Leases[0].State != "bound" || leases.Leases[1].State != "released" {
		t.Fatalf("after restart: %+v", leases)
	}
	// The PLC kept its address across the box's restart, as a device does until its lease
	// ends: the restarted box names it from the lease file, without a new DHCP exchange.
	l.setMAC(plcMAC)
	l.ip("dev", "addr", "add", "198.18.3.20/24", "dev", "eth0")
	if res, out, err := l.dig("dev", l3DownAddr, "api.azure.test", "A"); err != nil || res.status != "NOERROR" {
		t.Fatalf("dig from the PLC after the restart: %+v %v\n%s", res, err, out)
	}
	recs = l.auditQuery(bin, "l3", "--device", "plc-07", "--kind", "dns")
	if len(recs) != 3 || recs[2].Time.Before(recs[1].Time) || recs[2].MAC != plcMAC {
		t.Fatalf("dns records of plc-07 after the restart: %+v, want the two before and the one after", recs)
	}
}
