package store

import "github.com/hashicorp/go-memdb"

// tableEvent holds every other kind: config changes and summaries (and any kind added later).
const tableEvent = "event"

// eventTableSchema is small: events are few, so a time range and Filter.Match find them.
func eventTableSchema() *memdb.TableSchema {
	return &memdb.TableSchema{
		Name: tableEvent,
		Indexes: indexes(
			index(indexID, true, false, seqIndex()),
			index(indexTime, false, false, timeIndex()),
		),
	}
}
