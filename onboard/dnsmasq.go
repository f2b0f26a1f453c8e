package onboard

// dnsmasq's address= and server= lines, the form the retired product's DNS server was kept in.

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/lnm-project/lnm/allowlist"
)

// dnsmasqUnmapped says why common dnsmasq options make no rule.
var dnsmasqUnmapped = map[string]string{
	"listen-address":   "the box listens on `listen` in lnm.conf",
	"interface":        "the box listens on `listen` in lnm.conf",
	"except-interface": "the box listens on `listen` in lnm.conf",
	"bind-interfaces":  "the box listens on `listen` in lnm.conf",
	"port":             "the box's DNS port is `dns PORT` in lnm.conf",
	"no-hosts":         "lnm reads no hosts file",
	"addn-hosts":       "lnm reads no hosts file",
	"no-resolv":        "the box's upstream servers are `upstream` in lnm.conf",
	"resolv-file":      "the box's upstream servers are `upstream` in lnm.conf",
	"strict-order":     "the box's upstream servers are `upstream` in lnm.conf",
	"all-servers":      "the box's upstream servers are `upstream` in lnm.conf",
	"domain-needed":    "the box never forwards a name it does not allow",
	"bogus-priv":       "the box never forwards a name it does not allow",
	"cache-size":       "the box answers allowed names itself, with `ttl` from lnm.conf",
	"local-ttl":        "the box answers allowed names itself, with `ttl` from lnm.conf",
	"neg-ttl":          "the box answers allowed names itself, with `ttl` from lnm.conf",
	"log-queries":      "every query is audited (`lnm audit query`)",
	"log-facility":     "every query is audited (`lnm audit query`)",
	"local":            "answered by dnsmasq itself; the box denies every name it does not list",
}

// ImportDnsmasq reads a dnsmasq configuration: each name in an `address=/NAME/.../IP` or
// `server=/NAME/.../IP` line becomes a rule ".NAME" (dnsmasq matches a name and everything
// below it, with or without a leading dot) or "*.NAME" when written so (dnsmasq 2.86 and
// later: below the name only). The addresses are not needed: the box answers allowed names
// with its own. `#` comments are skipped; every other line is listed as unmapped.
func ImportDnsmasq(data []byte) (ImportResult, error) {
	im := importer{seen: map[string]string{}}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if err := im.dnsmasqLine(n, line); err != nil {
			return ImportResult{}, err
		}
	}
	if err := sc.Err(); err != nil {
		return ImportResult{}, fmt.Errorf("onboard: import: %w", err)
	}
	if len(im.res.Rules) == 0 {
		return ImportResult{}, errors.New("onboard: import: no address=/NAME/IP or server=/NAME/IP line in the file")
	}
	return im.res, nil
}

func (im *importer) dnsmasqLine(n int, line string) error {
	unmapped := func(why string) {
		im.res.Unmapped = append(im.res.Unmapped, fmt.Sprintf("line %d: %s: %s", n, line, why))
	}
	opt, val, _ := strings.Cut(line, "=")
	opt = strings.TrimPrefix(opt, "--")
	if opt != "address" && opt != "server" {
		why, ok := dnsmasqUnmapped[opt]
		switch {
		case ok:
		case strings.HasPrefix(opt, "dhcp"):
			why = "the box serves no DHCP"
		default:
			why = "dnsmasq option with no allow-list meaning"
		}
		unmapped(why)
		return nil
	}
	if !strings.HasPrefix(val, "/") {
		if opt == "server" {
			unmapped("an upstream server for every name: `upstream` in lnm.conf")
		} else {
			unmapped("want address=/NAME/IP")
		}
		return nil
	}
	parts := strings.Split(val[1:], "/")
	names, target := parts[:len(parts)-1], parts[len(parts)-1]
	if len(names) == 0 {
		return fmt.Errorf("onboard: import: line %d: %q: want %s=/NAME/IP", n, line, opt)
	}
	switch {
	case opt == "address" && (target == "" || target == "#" || isUnspecified(target)):
		unmapped("blocks the names in dnsmasq; the box denies every name it does not list")
		return nil
	case opt == "server" && target == "":
		unmapped("answered only from dnsmasq's own data; the box denies every name it does not list")
		return nil
	case opt == "server" && target == "#":
		unmapped("sent to dnsmasq's usual servers; the box denies every name it does not list")
		return nil
	}
	origin := "line " + strconv.Itoa(n)
	for _, name := range names {
		switch name {
		case "#":
			unmapped("`#` matches every name; an allow list has no rule for everything: list the names")
			continue
		case "":
			continue
		}
		text := name
		if !strings.HasPrefix(name, "*.") {
			text = "." + strings.TrimPrefix(name, ".")
		}
		pat, err := allowlist.ParsePattern(text)
		if err != nil {
			return fmt.Errorf("onboard: import: line %d: %q: %s", n, name, err)
		}
		if opt == "address" { // server= lines usually name private zones
			im.checkTLD(origin, pat)
		}
		im.add(allowlist.Rule{Pattern: pat, Origin: origin}, true)
	}
	if opt == "server" {
		im.warn("%s: server=%s: dnsmasq sent these names to %s; the box answers them with its own address and forwards the connections (a `zone NAME { forward %s }` in lnm.conf relays a name's DNS instead)", origin, val, target, target)
	}
	return nil
}

func isUnspecified(s string) bool {
	a, err := netip.ParseAddr(s)
	return err == nil && a.IsUnspecified()
}
