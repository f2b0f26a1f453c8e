package store

import "github.com/hashicorp/go-memdb"

// tableDNS holds dns records: one answered question each.
const tableDNS = "dns"

// dnsTableSchema indexes queries for linking (client_name: the latest query of a client for a
// name before a moment; client: any query of a client in a window, both in time order) and
// for filters (name, verdict, unlinked, time).
func dnsTableSchema() *memdb.TableSchema {
	return &memdb.TableSchema{
		Name: tableDNS,
		Indexes: indexes(
			index(indexID, true, false, seqIndex()),
			index(indexTime, false, false, timeIndex()),
			index(indexClient, false, true, clientTimeIndex()),
			index(indexClientName, false, true, clientNameIndex()),
			index(indexName, false, true, nameIndex()),
			index(indexVerdict, false, true, verdictIndex()),
			index(indexUnlinked, false, true, unlinkedIndex()),
		),
	}
}
