package audit

import "github.com/lnm-project/lnm/allowlist"

// Reason words earlier versions wrote that mean something else today. Records are read in
// today's words, so that one query (and `lnm allow suggest`) treats old and new records
// alike; the files themselves are never rewritten. docs/audit-records.md lists the renames.
//
// Before the two data paths shared one vocabulary, a DNS query from outside `sources` was
// recorded "source_refused", and "source_not_allowed" stood both for a connection from
// outside `sources` and for a rule whose `from` leaves the device out. The second kind always names that rule (the near miss
// that explains the denial) and the first never names one, which tells them apart. The
// mapping leaves records written since unchanged, so it may run on every read.
const legacySourceRefused = "source_refused"

// modernReason returns r's reason in today's words.
func modernReason(r *Record) string {
	switch {
	case r.Reason == legacySourceRefused:
		return string(allowlist.ReasonSourceNotAllowed)
	case r.Reason == string(allowlist.ReasonSourceNotAllowed) && r.Rule != "":
		return string(allowlist.ReasonFromMismatch)
	}
	return r.Reason
}
