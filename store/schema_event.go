package store

import "github.com/hashicorp/go-memdb"

// tableEvent holds every other kind: config changes and summaries (and any kind added later).
const tableEvent = "event"

// eventTableSchema is small: events are few, and the sparse indexes cost nothing for records
// that lack the field (a summary of a flood carries a client and a verdict).
func eventTableSchema() *memdb.TableSchema {
	return &memdb.TableSchema{
		Name: tableEvent,
		Indexes: indexes(
			index(indexID, true, false, seqIndex()),
			index(indexTime, false, false, timeIndex()),
			index(indexClient, false, true, clientIndex()),
			index(indexName, false, true, nameIndex()),
			index(indexVerdict, false, true, verdictIndex()),
			index(indexUnlinked, false, true, unlinkedIndex()),
		),
	}
}
