package store

import (
	"path/filepath"
	"testing"

	"github.com/hashicorp/go-memdb"

	"github.com/lnm-project/lnm/internal/testkit"
)

func TestSchemaGolden(t *testing.T) {
	s := schema()
	if _, err := memdb.NewMemDB(s); err != nil {
		t.Fatalf("schema is invalid: %v", err)
	}
	testkit.Golden(t, filepath.Join("testdata", "schema.golden"), dumpSchema(s))
}

// Every index must be typed: the planner and the dump rely on indexInfo, and reflective
// field indexers are not used in this package.
func TestSchemaIndexesAreTyped(t *testing.T) {
	for tn, table := range schema().Tables {
		for in, ix := range table.Indexes {
			if _, ok := ix.Indexer.(indexInfo); !ok {
				t.Errorf("%s.%s: indexer %T is not one of the store's typed indexers", tn, in, ix.Indexer)
			}
		}
	}
}
