package store

import (
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/hashicorp/go-memdb"
)

var update = flag.Bool("update", false, "rewrite testdata/schema.golden")

func TestSchemaGolden(t *testing.T) {
	s := schema()
	if _, err := memdb.NewMemDB(s); err != nil {
		t.Fatalf("schema is invalid: %v", err)
	}
	got := dumpSchema(s)
	path := filepath.Join("testdata", "schema.golden")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./store/ -run TestSchemaGolden -update)", err)
	}
	if got != string(want) {
		t.Errorf("schema changed; if on purpose, run with -update\n--- got\n%s--- want\n%s", got, want)
	}
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
