package layout

import (
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/lnm-project/lnm/"

// maxLines is the most non-test lines a package may hold before it should be split.
const maxLines = 2500

// mayImport is, for each package, the lnm packages it may import: imports run one way,
// cmd → appliance → (config → allowfile, adminapi, onboard, store, audit, forwarder, resolver, dhcp) →
// allowlist, and the data path never reads config files. A package missing here fails the
// test, so a new one has to be placed.
var mayImport = map[string][]string{
	"cmd/lnm":             {"console", "appliance", "config", "allowfile", "adminapi", "onboard", "store", "audit", "forwarder", "resolver", "dhcp", "allowlist", "internal/completion", "internal/auditview"},
	"appliance":           {"config", "allowfile", "adminapi", "store", "audit", "forwarder", "resolver", "dhcp", "allowlist", "levelid"},
	"config":              {"allowfile", "audit", "forwarder", "resolver", "store", "dhcp", "allowlist", "internal/atomicfile", "levelid"},
	"console":             {"adminapi", "onboard", "audit", "allowlist", "internal/atomicfile"},
	"adminapi":            {"audit", "allowlist"},
	"onboard":             {"audit", "allowlist"},
	"store":               {"audit", "allowlist", "internal/linkindex"},
	"audit":               {"allowlist"},
	"forwarder":           {"allowlist", "clienthello", "httpfront", "internal/acceptpace", "internal/netpoll", "internal/splice", "levelid"},
	"clienthello":         {"allowlist"},
	"httpfront":           {"allowlist"},
	"resolver":            {"allowlist", "internal/acceptpace", "internal/dnswire", "internal/udpsock"},
	"dhcp":                {"internal/atomicfile"},
	"allowfile":           {"allowlist"},
	"allowlist":           {},
	"levelid":             {"allowlist"},
	"internal/testkit":    {},
	"internal/layout":     {},
	"internal/completion": {},
	"internal/atomicfile": {},
	"internal/acceptpace": {},
	"internal/netpoll":    {},
	"internal/splice":     {"internal/netpoll"},
	"internal/dnswire":    {},
	"internal/udpsock":    {},
	"internal/linkindex":  {"audit"},
	"internal/auditview":  {"adminapi", "audit", "allowlist"},
	"bench":               {}, // builds lnm as a binary and runs it beside its peers; imports none of it
}

// TestLayout parses every package's non-test files and checks its imports and its size.
func TestLayout(t *testing.T) {
	root := filepath.Join("..", "..")
	seen := 0
	pkgs := map[string][]string{} // package dir → its non-test files
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() != ".." && (strings.HasPrefix(d.Name(), ".") && d.Name() != "." || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(path, ".go") && !strings.HasSuffix(path, "_test.go") &&
			!strings.HasPrefix(filepath.Base(path), ".") {
			rel, _ := filepath.Rel(root, filepath.Dir(path))
			pkgs[filepath.ToSlash(rel)] = append(pkgs[filepath.ToSlash(rel)], path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for pkg, files := range pkgs {
		allowed, ok := mayImport[pkg]
		if !ok {
			t.Errorf("package %s is not placed in the layout: add it to mayImport and to the README's layout table", pkg)
			continue
		}
		seen++
		lines := 0
		fset := token.NewFileSet()
		for _, path := range files {
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			lines += strings.Count(string(data), "\n")
			f, err := parser.ParseFile(fset, path, data, parser.ImportsOnly)
			if err != nil {
				t.Fatal(err)
			}
			for _, imp := range f.Imports {
				p, _ := strconv.Unquote(imp.Path.Value)
				dep, ok := strings.CutPrefix(p, module)
				if ok && !slices.Contains(allowed, dep) {
					t.Errorf("%s imports %s: imports run cmd → appliance → (config → allowfile, adminapi, onboard, store, audit, forwarder, resolver, dhcp) → allowlist", path, dep)
				}
			}
		}
		if lines > maxLines {
			t.Errorf("package %s has %d lines of non-test code, more than %d: split it by purpose", pkg, lines, maxLines)
		}
	}
	if seen < 10 {
		t.Fatalf("found only %d packages; is the test looking at the repository?", seen)
	}
}
