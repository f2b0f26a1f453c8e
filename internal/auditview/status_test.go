package auditview

import (
	"testing"
	"time"
)

func TestStatusUptime(t *testing.T) {
	for _, tc := range []struct {
		s    int64
		want string
	}{{0, "0s"}, {59, "59s"}, {61, "1m1s"}, {3600, "1h0m"}, {3*3600 + 12*60 + 5, "3h12m"}, {86400 + 5, "1d0h"}, {400 * 86400, "400d0h"}} {
		if got := uptime(time.Duration(tc.s) * time.Second); got != tc.want {
			t.Errorf("uptime(%ds) = %q, want %q", tc.s, got, tc.want)
		}
	}
}
