package config

import (
	"bufio"
	"bytes"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/lnm-project/lnm/internal/testkit"
	"github.com/lnm-project/lnm/resolver"
)

// goldenSep separates a golden case's config from its expected output.
const goldenSep = "\n----------\n"

// check is what `lnm check` does: the error text, or the summary.
func check(filename string, conf []byte) string {
	c, err := Parse(filename, bytes.NewReader(conf))
	if err == nil {
		err = c.Validate()
	}
	if err != nil {
		return err.Error() + "\n"
	}
	return c.Summary()
}

// goldenName is the file name a golden case is parsed as: the example's own path for the
// copies of examples/*.conf, lnm.conf for the rest.
func goldenName(path string) string {
	base := strings.TrimSuffix(filepath.Base(path), ".txt")
	if name, ok := strings.CutPrefix(base, "example_"); ok {
		return "examples/" + name + ".conf"
	}
	return "lnm.conf"
}

func splitGolden(t *testing.T, path string) (conf, want []byte) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(data, []byte(goldenSep))
	if i < 0 {
		t.Fatalf("%s: no %q line between config and expected output", path, strings.TrimSpace(goldenSep))
	}
	return data[:i+1], data[i+len(goldenSep):]
}

func writeGolden(t *testing.T, path string, conf []byte, out string) {
	t.Helper()
	data := append(append(bytes.Clone(conf), goldenSep[1:]...), out...)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestConfigGolden runs every testdata/config/*.txt case: the config, a line of dashes, then
// the exact error text or the summary. Adding a case is adding a file; -update writes the
// output part.
func TestConfigGolden(t *testing.T) {
	paths, err := filepath.Glob("testdata/config/*.txt")
	if err != nil || len(paths) == 0 {
		t.Fatalf("no golden cases in testdata/config: %v", err)
	}
	for _, path := range paths {
		t.Run(strings.TrimSuffix(filepath.Base(path), ".txt"), func(t *testing.T) {
			conf, _ := splitGolden(t, path)
			got := check(goldenName(path), conf)
			testkit.Golden(t, path, string(conf)+goldenSep[1:]+got)
			// Golden cases named err_* must fail and the others must pass, so that a case
			// cannot silently turn into the opposite of what its name promises.
			isErr := strings.HasPrefix(filepath.Base(path), "err_")
			if hasErr := strings.HasPrefix(got, goldenName(path)+":"); hasErr != isErr {
				t.Errorf("%s: case name says error=%v, output says error=%v", path, isErr, hasErr)
			}
		})
	}
}

// TestExamples keeps each examples/*.conf and its golden copy in step, and loads the real
// file the way `lnm run` does.
func TestExamples(t *testing.T) {
	paths, err := filepath.Glob("../examples/*.conf")
	if err != nil || len(paths) == 0 {
		t.Fatalf("no examples: %v", err)
	}
	for _, path := range paths {
		name := strings.TrimSuffix(filepath.Base(path), ".conf")
		t.Run(name, func(t *testing.T) {
			if _, err := Load(path); err != nil {
				t.Fatalf("Load: %v", err)
			}
			example, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			golden := filepath.Join("testdata", "config", "example_"+name+".txt")
			if *testkit.Update {
				writeGolden(t, golden, example, check(goldenName(golden), example))
				return
			}
			conf, _ := splitGolden(t, golden)
			if !bytes.Equal(conf, example) {
				t.Errorf("%s no longer matches %s; run with -update", golden, path)
			}
		})
	}
}

// confBlock is a ```conf code block in a Markdown file.
type confBlock struct {
	file string
	line int // line of the opening fence
	text string
}

// confBlocks returns the ```conf blocks of a Markdown document. Every such block must be a
// whole, valid config; tag fragments differently (```text).
func confBlocks(file string, doc []byte) []confBlock {
	var blocks []confBlock
	var cur *confBlock
	var body strings.Builder
	sc := bufio.NewScanner(bytes.NewReader(doc))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case cur == nil && line == "```conf":
			cur = &confBlock{file: file, line: n}
			body.Reset()
		case cur != nil && line == "```":
			cur.text = body.String()
			blocks = append(blocks, *cur)
			cur = nil
		case cur != nil:
			body.WriteString(sc.Text())
			body.WriteByte('\n')
		}
	}
	return blocks
}

// checkBlock parses and validates a block with its lines numbered as in the Markdown file.
func checkBlock(b confBlock) error {
	text := strings.Repeat("\n", b.line) + b.text
	c, err := Parse(b.file, strings.NewReader(text))
	if err != nil {
		return err
	}
	return c.Validate()
}

// TestDocsConfigs parses every ```conf block in README.md and docs/*.md, so the docs cannot
// show a config that lnm refuses.
func TestDocsConfigs(t *testing.T) {
	docs, _ := filepath.Glob("../docs/*.md")
	if _, err := os.Stat("../README.md"); err == nil {
		docs = append([]string{"../README.md"}, docs...)
	}
	if len(docs) == 0 {
		t.Skip("no README.md or docs/*.md yet")
	}
	for _, path := range docs {
		doc, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		blocks := confBlocks(path, doc)
		for _, b := range blocks {
			if err := checkBlock(b); err != nil {
				t.Errorf("```conf block at %s:%d: %v", path, b.line, err)
			}
		}
		t.Logf("%s: %d conf blocks", path, len(blocks))
	}
}

// TestConfBlocks proves the docs test finds blocks and reports a bad one at its real line.
func TestConfBlocks(t *testing.T) {
	doc := "# Title\n\n```conf\nlnm {\n    listen 127.0.0.1\n}\n```\n\ntext\n\n```sh\nnot config\n```\n\n" +
		"  ```conf\n  lnm {\n      listen 127.0.0.1\n      allow {\n          *example.com\n      }\n  }\n  ```\n"
	blocks := confBlocks("README.md", []byte(doc))
	if len(blocks) != 2 {
		t.Fatalf("found %d conf blocks, want 2: %+v", len(blocks), blocks)
	}
	if err := checkBlock(blocks[0]); err != nil {
		t.Errorf("good block: %v", err)
	}
	err := checkBlock(blocks[1])
	if err == nil || !strings.HasPrefix(err.Error(), "README.md:19: ") {
		t.Errorf("bad block: got %v, want an error at README.md:19", err)
	}
}

func TestConfigErrorForms(t *testing.T) {
	for _, tc := range []struct {
		err  ConfigError
		want string
	}{
		{ConfigError{File: "a.conf", Line: 3, Msg: "m"}, "a.conf:3: m"},
		{ConfigError{File: "a.conf", Msg: "m"}, "a.conf: m"},
		{ConfigError{Msg: "m"}, "config: m"},
	} {
		if got := tc.err.Error(); got != tc.want {
			t.Errorf("%+v: got %q, want %q", tc.err, got, tc.want)
		}
	}
}

// TestValidateJoins checks that Validate reports every problem as a *ConfigError, in line
// order, whatever order the checks ran in.
func TestValidateJoins(t *testing.T) {
	conf := "lnm {\n listen 127.0.0.1\n proxy 443\n tcp 443 10.0.0.1:80\n allow {\n  a.test 8883\n  a.test 8883\n }\n}\n"
	c, err := Parse("x.conf", strings.NewReader(conf))
	if err != nil {
		t.Fatal(err)
	}
	err = c.Validate()
	var ce *ConfigError
	if !errors.As(err, &ce) || ce.Line != 4 {
		t.Fatalf("got %v, want a *ConfigError at line 4 first", err)
	}
	lines := strings.Split(err.Error(), "\n")
	want := []string{"x.conf:4: ", "x.conf:6: ", "x.conf:7: ", "x.conf:7: "}
	if len(lines) != len(want) {
		t.Fatalf("got %d errors, want %d:\n%v", len(lines), len(want), err)
	}
	for i, l := range lines {
		if !strings.HasPrefix(l, want[i]) {
			t.Errorf("error %d: %q, want prefix %q", i, l, want[i])
		}
	}
}

func TestLoadMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "none.conf")
	_, err := Load(path)
	var ce *ConfigError
	if !errors.As(err, &ce) || ce.File != path || !strings.Contains(err.Error(), "no such file") {
		t.Fatalf("got %v, want a *ConfigError naming %s", err, path)
	}
}

// TestCodeBuiltConfig checks that a Config built in code from Defaults validates and
// summarizes without a file.
func TestCodeBuiltConfig(t *testing.T) {
	c := Defaults()
	if err := c.Validate(); err == nil || err.Error() != "config: listen is required: the address DNS answers carry and the proxies bind" {
		t.Fatalf("empty Defaults: got %v", err)
	}
	c.Listen = append(c.Listen, netip.MustParseAddr("127.0.0.1"))
	c.TTL = 0
	if err := c.Validate(); err == nil || err.Error() != "config: ttl must be above zero" {
		t.Fatalf("zero TTL: got %v", err)
	}
	c.TTL = resolver.DefaultTTL
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if s := c.Summary(); !strings.Contains(s, "config           (not from a file)\n") {
		t.Errorf("summary:\n%s", s)
	}
}

// fileLine is the prefix every error and warning from a parsed config must carry.
var fileLine = regexp.MustCompile(`^fuzz\.conf:[1-9][0-9]*: \S`)

func FuzzParse(f *testing.F) {
	for _, glob := range []string{"../examples/*.conf", "testdata/config/*.txt"} {
		paths, _ := filepath.Glob(glob)
		for _, p := range paths {
			data, err := os.ReadFile(p)
			if err != nil {
				f.Fatal(err)
			}
			if conf, _, ok := bytes.Cut(data, []byte(goldenSep)); ok {
				data = conf
			}
			f.Add(string(data))
		}
	}
	f.Fuzz(func(t *testing.T, conf string) {
		c, err := Parse("fuzz.conf", strings.NewReader(conf))
		if err != nil {
			if !fileLine.MatchString(err.Error()) {
				t.Fatalf("Parse error without FILE:LINE: %q", err)
			}
			return
		}
		if err := c.Validate(); err != nil {
			for _, line := range strings.Split(err.Error(), "\n") {
				if !fileLine.MatchString(line) {
					t.Fatalf("Validate error without FILE:LINE: %q", line)
				}
			}
			return
		}
		for _, w := range c.Warnings() {
			if !fileLine.MatchString(w) {
				t.Fatalf("warning without FILE:LINE: %q", w)
			}
		}
		if s1, s2 := c.Summary(), c.Summary(); s1 != s2 {
			t.Fatalf("Summary is not stable:\n%s\n%s", s1, s2)
		}
	})
}

func BenchmarkParse(b *testing.B) {
	conf, err := os.ReadFile("../examples/level3.conf")
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(conf)))
	b.ReportAllocs()
	for b.Loop() {
		c, err := Parse("level3.conf", bytes.NewReader(conf))
		if err != nil {
			b.Fatal(err)
		}
		if err := c.Validate(); err != nil {
			b.Fatal(err)
		}
	}
}
