package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestDemo is `make demo`: the three-level lab of the end-to-end test, a device's everyday
// traffic, a denied attempt and a hard-coded address, and what each box's audit trail says
// about them. It runs only when LNM_DEMO=1, and prints for people rather than asserting.
func TestDemo(t *testing.T) {
	if os.Getenv("LNM_DEMO") != "1" {
		t.Skip("the demo runs with LNM_DEMO=1 (make demo)")
	}
	requireLab(t)
	bin := buildLNM(t)
	l := newLab(t)
	l.dumpLogsOnFailure()
	l.startInet()
	l.startBox(bin, "l4", addDirectives(t, exampleConfig(t, "level4.conf"), "children "+l3UpAddr), l4DownAddr)
	l.startBox(bin, "l3", exampleConfig(t, "level3.conf"), l3DownAddr)

	say := func(format string, args ...any) { fmt.Printf(format+"\n", args...) }
	show := func(title, host, name string, args ...string) {
		say("\n$ %s", title)
		out, errOut, err := l.run(host, name, args...)
		fmt.Print(out, errOut)
		if err != nil {
			say("(exit: %v)", err)
		}
	}
	say("\n=== The lab: device %s -> level-3 box %s -> level-4 box %s -> internet (%s is its DNS)", devAddr, l3DownAddr, l4DownAddr, inetDNS)
	say("The device's resolv.conf points at the level-3 box; it has no route to the internet.")

	show("dig www.contoso.test            # from the device: the level-3 box answers with itself", "dev", "dig", "+noall", "+answer", "+comments", "www.contoso.test")
	show("curl https://www.contoso.test/   # through both boxes, certificate verified", "dev", "curl", "-sS", "--cacert", l.caFile, "https://www.contoso.test/")
	show("dig blocked.evil.test            # not on the list", "dev", "dig", "+noall", "+comments", "blocked.evil.test")
	show("curl --resolve blocked.evil.test:443:198.18.3.1 https://blocked.evil.test/   # forced: the box refuses the SNI", "dev",
		"curl", "-sS", "--cacert", l.caFile, "--resolve", "blocked.evil.test:443:"+l3DownAddr, "https://blocked.evil.test/")
	show("curl --resolve api.azure.test:443:198.18.3.1 https://api.azure.test/   # allowed, but the address is baked in: no DNS query", "dev",
		"curl", "-sS", "--cacert", l.caFile, "--resolve", "api.azure.test:443:"+l3DownAddr, "https://api.azure.test/")

	for _, host := range []string{"l3", "l4"} {
		conf := filepath.Join(l.dir, host+".conf")
		say("\n=== lnm audit query on the %s box", map[string]string{"l3": "level-3", "l4": "level-4"}[host])
		say("$ lnm audit query --config %s", conf)
		out, err := exec.Command(bin, "audit", "query", "--config", conf).CombinedOutput()
		fmt.Print(string(out))
		if err != nil {
			t.Fatalf("lnm audit query on %s: %v", host, err)
		}
	}
	say("\nThe level-3 box links each connection to the device's query; the api.azure.test")
	say("connection is flagged unlinked: the device never asked this box for the name.")
}
