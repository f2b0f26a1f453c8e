package store

import "github.com/hashicorp/go-memdb"

// tableDNS holds dns records, in blocks: a row is a dnsBlock, the queries one write
// transaction inserted (see dnsBlock for why).
const tableDNS = "dns"

// indexName finds a name's records: dns queries by name, connections by SNI.
const indexName = "name"

// dnsTableSchema indexes blocks for filters only: linking reads the link index, which knows
// every query the moment it is added (see internal/linkindex). Time serves ranges and eviction,
// client the commonest question ("what did this device do"), name the next ("who asked for
// this"), verdict the denials, which are few. Each block has one entry per distinct value,
// so an index costs little per query under load.
func dnsTableSchema() *memdb.TableSchema {
	return &memdb.TableSchema{
		Name: tableDNS,
		Indexes: indexes(
			index(indexID, true, false, blockSeqIndex()),
			index(indexTime, false, false, blockTimeIndex()),
			index(indexClient, false, true, blockClientIndex()),
			index(indexName, false, true, blockNameIndex()),
			index(indexVerdict, false, true, blockVerdictIndex()),
		),
	}
}
