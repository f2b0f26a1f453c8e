package testkit

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Update is the -update flag of every golden test in the repository: with it, Golden writes
// the current output instead of comparing (go test ./store -run TestSchemaGolden -update).
// Tests that write a golden file of their own shape read it too.
var Update = flag.Bool("update", false, "rewrite golden files from the current output instead of comparing")

// Golden compares got with the file at path and fails the test with both texts and the first
// differing line when they differ; with -update it writes got to path instead.
func Golden(t testing.TB, path, got string) {
	t.Helper()
	if *Update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test -update writes it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from the output at line %d (go test -update rewrites it)\n--- got\n%s\n--- want\n%s",
			path, firstDiffLine(got, string(want)), got, want)
	}
}

// firstDiffLine is the 1-based number of the first line where a and b differ, a missing
// final newline included.
func firstDiffLine(a, b string) int {
	al, bl := strings.SplitAfter(a, "\n"), strings.SplitAfter(b, "\n")
	for i := range min(len(al), len(bl)) {
		if al[i] != bl[i] {
			return i + 1
		}
	}
	return min(len(al), len(bl)) + 1
}
