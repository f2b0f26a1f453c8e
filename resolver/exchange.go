package resolver

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// exchange asks each server in turn, each for at most perTry, until one gives a conclusive
// answer (NOERROR or NXDOMAIN). It returns that answer and its server, or every failure.
func exchange(ctx context.Context, q *dns.Msg, servers []netip.AddrPort, perTry time.Duration) (*dns.Msg, netip.AddrPort, error) {
	var errs []error
	for _, srv := range servers {
		resp, err := exchangeOne(ctx, q, srv, perTry)
		if err == nil {
			return resp, srv, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, netip.AddrPort{}, errors.Join(errs...)
}

// exchangeOne asks one server over UDP, and again over TCP when the UDP answer is truncated.
func exchangeOne(ctx context.Context, q *dns.Msg, srv netip.AddrPort, timeout time.Duration) (*dns.Msg, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c := dns.Client{Net: "udp", Timeout: timeout}
	resp, _, err := c.ExchangeContext(ctx, q, srv.String())
	if err == nil && resp.Truncated {
		c.Net = "tcp"
		resp, _, err = c.ExchangeContext(ctx, q, srv.String())
	}
	if err != nil {
		return nil, fmt.Errorf("server %s: %w", srv, err)
	}
	// The ID matched (miekg checks it); a different question means a confused or spoofing
	// server, whose records must not be relayed or cached.
	if len(resp.Question) != 1 || resp.Question[0].Qtype != q.Question[0].Qtype ||
		!strings.EqualFold(resp.Question[0].Name, q.Question[0].Name) {
		return nil, fmt.Errorf("server %s: answer is for another question", srv)
	}
	switch resp.Rcode {
	case dns.RcodeSuccess, dns.RcodeNameError:
		return resp, nil
	}
	return nil, fmt.Errorf("server %s: answered %s", srv, dns.RcodeToString[resp.Rcode])
}
