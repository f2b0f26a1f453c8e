package store

import "github.com/hashicorp/go-memdb"

// tableConn holds conn records: a connection opened, closed or denied.
const tableConn = "conn"

// connTableSchema indexes connections for filters: time, client, name (the SNI), and the
// sparse verdict and unlinked indexes, which hold only the records an operator hunts for.
// A close finds its open's link in the link index, not here.
func connTableSchema() *memdb.TableSchema {
	return &memdb.TableSchema{
		Name: tableConn,
		Indexes: indexes(
			index(indexID, true, false, seqIndex()),
			index(indexTime, false, false, timeIndex()),
			index(indexClient, false, true, clientIndex()),
			index(indexName, false, true, sniIndex()),
			index(indexVerdict, false, true, verdictIndex()),
			index(indexUnlinked, false, true, unlinkedIndex()),
		),
	}
}
