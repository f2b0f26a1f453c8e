package store

import "github.com/hashicorp/go-memdb"

// tableConn holds conn records: a connection opened, closed or denied.
const tableConn = "conn"

// connTableSchema indexes connections for filters (client, SNI as name, verdict, unlinked,
// time) and by connection id, so that a close finds its open.
func connTableSchema() *memdb.TableSchema {
	return &memdb.TableSchema{
		Name: tableConn,
		Indexes: indexes(
			index(indexID, true, false, seqIndex()),
			index(indexTime, false, false, timeIndex()),
			index(indexClient, false, true, clientIndex()),
			index(indexName, false, true, nameIndex()),
			index(indexVerdict, false, true, verdictIndex()),
			index(indexConnID, false, true, connIDIndex()),
			index(indexUnlinked, false, true, unlinkedIndex()),
		),
	}
}
