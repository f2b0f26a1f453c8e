package store

import "github.com/hashicorp/go-memdb"

// tableDNS holds dns records: one answered question each.
const tableDNS = "dns"

// dnsTableSchema indexes queries for filters only: linking reads the link index, which
// knows every query the moment it is added (see linkIndex). Time serves ranges and
// eviction, client the commonest question ("what did this device do"), verdict the
// denials, which are few.
func dnsTableSchema() *memdb.TableSchema {
	return &memdb.TableSchema{
		Name: tableDNS,
		Indexes: indexes(
			index(indexID, true, false, seqIndex()),
			index(indexTime, false, false, timeIndex()),
			index(indexClient, false, true, clientIndex()),
			index(indexVerdict, false, true, verdictIndex()),
		),
	}
}
