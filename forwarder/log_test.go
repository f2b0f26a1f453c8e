package forwarder_test

import (
	"log/slog"
	"net/netip"
	"strings"
	"testing"

	"github.com/lnm-project/lnm/forwarder"
	"github.com/lnm-project/lnm/internal/testkit"
)

// TestConnectionLogLevel: connections are audit records; the process log has a line per
// connection only at debug level.
func TestConnectionLogLevel(t *testing.T) {
	for _, tc := range []struct {
		level slog.Level
		lines bool
	}{{slog.LevelInfo, false}, {slog.LevelDebug, true}} {
		t.Run(tc.level.String(), func(t *testing.T) {
			var out testkit.Buffer
			ca := testkit.NewCA(t)
			be := testkit.TLSEcho(t, "127.0.0.1:0", ca.Issue(t, "api.azure.test", "evil.test"))
			s := start(t, forwarder.Config{
				List: rules(t, "*.azure.test"), Parent: netip.MustParseAddr("127.0.0.1"),
				Logger: slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: tc.level})),
			}, be.Port())
			if got, err := talk(t, s.addr(), "api.azure.test", ca, "hi"); err != nil || got != "api.azure.test:hi" {
				t.Fatalf("reply %q, %v", got, err)
			}
			s.events.next(t, forwarder.EventClose)
			talk(t, s.addr(), "evil.test", ca, "x")
			s.events.next(t, forwarder.EventDeny)
			log := out.String()
			for _, sni := range []string{"sni=api.azure.test", "sni=evil.test"} {
				if strings.Contains(log, sni) != tc.lines {
					t.Errorf("at %s, the log has %s: %v, want %v\n%s", tc.level, sni, !tc.lines, tc.lines, log)
				}
			}
			if !strings.Contains(log, "listening") {
				t.Errorf("lifecycle lines are missing at %s:\n%s", tc.level, log)
			}
		})
	}
}
