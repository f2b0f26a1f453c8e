package audit

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Segment files. The active segment, the one being appended to, is named by the seq of its
// first record:
//
//	audit-00000000000000000001.jsonl
//
// When it is full it is fsynced, closed and renamed to carry the time range of its records, so
// that readers and retention can judge it without opening it:
//
//	audit-00000000000000000001_20261128T073000.123Z_20261128T083000.456Z.jsonl
//
// The seq has 20 digits (the width of the largest uint64), so names sort by seq as strings and
// every name matches the glob audit-*.jsonl that log shippers are given. A renamed file keeps its
// inode, so tailers that follow files by inode (Vector, Fluent Bit, Promtail) read on without
// rereading.
const (
	segPrefix  = "audit-"
	segSuffix  = ".jsonl"
	seqDigits  = 20
	nameLayout = "20060102T150405.000Z"
)

// segment is one file of the log as its name describes it.
type segment struct {
	name  string
	first uint64 // seq of its first record (the next seq when it is empty)
	// sealed segments are complete and carry the time range of their records; the active
	// segment (at most one, the last) does not.
	sealed     bool
	minT, maxT time.Time
	size       int64
}

func activeName(first uint64) string {
	return fmt.Sprintf("%s%0*d%s", segPrefix, seqDigits, first, segSuffix)
}

func sealedName(first uint64, minT, maxT time.Time) string {
	return fmt.Sprintf("%s%0*d_%s_%s%s", segPrefix, seqDigits, first,
		minT.UTC().Format(nameLayout), maxT.UTC().Format(nameLayout), segSuffix)
}

// parseSegmentName reads a name written by activeName or sealedName; ok is false for anything
// else (temporary files, an operator's notes), which the log leaves alone.
func parseSegmentName(name string) (s segment, ok bool) {
	rest, found := strings.CutPrefix(name, segPrefix)
	if !found {
		return s, false
	}
	if rest, found = strings.CutSuffix(rest, segSuffix); !found || len(rest) < seqDigits {
		return s, false
	}
	first, err := strconv.ParseUint(rest[:seqDigits], 10, 64)
	if err != nil || first == 0 {
		return s, false
	}
	s = segment{name: name, first: first}
	rest = rest[seqDigits:]
	if rest == "" {
		return s, true
	}
	lo, hi, found := strings.Cut(strings.TrimPrefix(rest, "_"), "_")
	if !found || rest[0] != '_' {
		return segment{}, false
	}
	if s.minT, err = time.Parse(nameLayout, lo); err != nil {
		return segment{}, false
	}
	if s.maxT, err = time.Parse(nameLayout, hi); err != nil {
		return segment{}, false
	}
	s.sealed = true
	return s, true
}

// listSegments returns the directory's segments in seq order.
func listSegments(dir string) ([]segment, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	var segs []segment
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		s, ok := parseSegmentName(e.Name())
		if !ok {
			continue
		}
		if info, err := e.Info(); err == nil {
			s.size = info.Size()
		}
		segs = append(segs, s)
	}
	slices.SortFunc(segs, func(a, b segment) int {
		if a.first != b.first {
			return cmpUint(a.first, b.first)
		}
		return strings.Compare(a.name, b.name)
	})
	for i := 1; i < len(segs); i++ {
		if segs[i].first == segs[i-1].first {
			return nil, fmt.Errorf("audit: %s and %s start at the same seq", segs[i-1].name, segs[i].name)
		}
	}
	return segs, nil
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// overlaps reports whether a sealed segment may hold records in [since, until); an active
// segment always may.
func (s *segment) overlaps(since, until time.Time) bool {
	if !s.sealed {
		return true
	}
	if !since.IsZero() && s.maxT.Before(since) {
		return false
	}
	if !until.IsZero() && !s.minT.Before(until) {
		return false
	}
	return true
}

// openSegment opens a segment for reading. A reader can race the writer's rename of the active
// segment or retention's removal: a vanished active segment is looked up again by its seq, a
// vanished sealed one was deleted and reads as empty (nil file, nil error).
func openSegment(dir string, s segment) (*os.File, error) {
	f, err := os.Open(filepath.Join(dir, s.name))
	if err == nil || !errors.Is(err, os.ErrNotExist) {
		return f, err
	}
	if s.sealed {
		return nil, nil
	}
	segs, lerr := listSegments(dir)
	if lerr != nil {
		return nil, lerr
	}
	for _, t := range segs {
		if t.first == s.first {
			if f, err = os.Open(filepath.Join(dir, t.name)); errors.Is(err, os.ErrNotExist) {
				return nil, nil
			}
			return f, err
		}
	}
	return nil, nil
}

// scanResult is what a full pass over a segment found.
type scanResult struct {
	lastSeq    uint64    // seq of the last good record; 0: none
	good       int64     // bytes up to and including the last good record's newline
	minT, maxT time.Time // over good records
	records    int
	bad        int // unparsable complete lines before the last good one
}

// scanSegment reads every line of r. A line counts as good when it ends in a newline and its
// head (seq and time) parses; everything after the last good line is a torn tail.
func scanSegment(r io.Reader) (scanResult, error) {
	var res scanResult
	br := bufio.NewReaderSize(r, 256<<10)
	var off int64
	badSinceGood := 0
	for {
		line, err := readLine(br)
		if len(line) > 0 && line[len(line)-1] == '\n' {
			off += int64(len(line))
			if seq, t, ok := parseHead(line[:len(line)-1]); ok {
				res.lastSeq, res.good = seq, off
				res.records++
				res.bad += badSinceGood
				badSinceGood = 0
				if res.minT.IsZero() || t.Before(res.minT) {
					res.minT = t
				}
				if t.After(res.maxT) {
					res.maxT = t
				}
			} else {
				badSinceGood++
			}
		}
		if err == io.EOF {
			return res, nil
		}
		if err != nil {
			return res, err
		}
	}
}

// readLine returns the next line including its newline, or the unterminated rest of the input
// with io.EOF. Lines of any length are returned whole.
func readLine(br *bufio.Reader) ([]byte, error) {
	line, err := br.ReadSlice('\n')
	if err != bufio.ErrBufferFull {
		return line, err
	}
	long := bytes.Clone(line)
	for err == bufio.ErrBufferFull {
		line, err = br.ReadSlice('\n')
		long = append(long, line...)
	}
	return long, err
}

// parseHead reads a line's seq and time and checks that the whole line is one JSON object
// without decoding the rest. A line from another writer with a different field order still
// parses, more slowly.
func parseHead(line []byte) (seq uint64, t time.Time, ok bool) {
	if seq, t, ok = quickHead(line); ok && len(line) > 0 && line[len(line)-1] == '}' && json.Valid(line) {
		return seq, t, true
	}
	var r Record
	if err := r.UnmarshalJSON(line); err != nil || r.Seq == 0 {
		return 0, time.Time{}, false
	}
	return r.Seq, r.Time, true
}

// quickHead reads the seq and time that AppendJSON writes first in every record. It checks
// nothing else; ok is false when the line does not start the way AppendJSON starts it.
func quickHead(line []byte) (seq uint64, t time.Time, ok bool) {
	rest, found := bytes.CutPrefix(line, []byte(`{"seq":`))
	if !found {
		return 0, t, false
	}
	i := 0
	for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
		i++
	}
	seq, err := strconv.ParseUint(string(rest[:i]), 10, 64)
	if err != nil || seq == 0 {
		return 0, t, false
	}
	if rest, found = bytes.CutPrefix(rest[i:], []byte(`,"time":"`)); !found {
		return 0, t, false
	}
	j := bytes.IndexByte(rest, '"')
	if j < 0 {
		return 0, t, false
	}
	if t, err = time.Parse(time.RFC3339Nano, string(rest[:j])); err != nil {
		return 0, t, false
	}
	return seq, t, true
}
