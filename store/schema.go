package store

import (
	"fmt"
	"slices"
	"strings"

	"github.com/hashicorp/go-memdb"
)

// Index names. A table has the ones its records can use; the planner looks them up by name.
const (
	indexID       = "id" // memdb's name for the primary key: the seq
	indexTime     = "time"
	indexClient   = "client"
	indexVerdict  = "verdict"
	indexUnlinked = "unlinked"
)

// tables lists every table's schema. Query merges the record tables (tableNames); the
// lease table is read by its own methods.
var tables = []func() *memdb.TableSchema{dnsTableSchema, connTableSchema, eventTableSchema, leaseTableSchema}

// schema builds the database schema. It is a function so that every Store gets its own
// indexers and no schema state is shared.
func schema() *memdb.DBSchema {
	s := &memdb.DBSchema{Tables: map[string]*memdb.TableSchema{}}
	for _, f := range tables {
		t := f()
		s.Tables[t.Name] = t
	}
	return s
}

// index is shorthand for one IndexSchema.
func index(name string, unique, allowMissing bool, ix memdb.Indexer) *memdb.IndexSchema {
	return &memdb.IndexSchema{Name: name, Unique: unique, AllowMissing: allowMissing, Indexer: ix}
}

// indexes builds a table's index map from its list.
func indexes(list ...*memdb.IndexSchema) map[string]*memdb.IndexSchema {
	m := make(map[string]*memdb.IndexSchema, len(list))
	for _, ix := range list {
		m[ix.Name] = ix
	}
	return m
}

// dumpSchema writes the schema as text, tables and indexes sorted, for the golden test: a
// change to an index shows up in review as a change to testdata/schema.golden.
func dumpSchema(s *memdb.DBSchema) string {
	var b strings.Builder
	names := make([]string, 0, len(s.Tables))
	for n := range s.Tables {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, tn := range names {
		t := s.Tables[tn]
		fmt.Fprintf(&b, "table %s\n", tn)
		ixNames := make([]string, 0, len(t.Indexes))
		for n := range t.Indexes {
			ixNames = append(ixNames, n)
		}
		slices.Sort(ixNames)
		for _, in := range ixNames {
			ix := t.Indexes[in]
			layout, order := "?", "key-ordered"
			if info, ok := ix.Indexer.(indexInfo); ok {
				layout = info.keyLayout()
				if info.seqOrdered() {
					order = "seq-ordered"
				}
			}
			fmt.Fprintf(&b, "  index %-12s unique=%-5t allow_missing=%-5t %-11s key: %s\n",
				in, ix.Unique, ix.AllowMissing, order, layout)
		}
	}
	return b.String()
}
