package audit

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"
)

// ErrCorrupt is wrapped by the error Read and ReadNewest return, after reading everything
// else, when a segment holds unparsable lines followed by good ones. An unparsable or torn
// last line of a segment is normal after a crash and is skipped without an error.
var ErrCorrupt = errors.New("audit: unparsable lines skipped")

// Read calls fn with every record in dir that matches f (f.Limit is ignored), oldest first
// (in seq order), until fn returns false. fn may keep the record. Segments whose names show
// they hold no record in f's time range are not opened. Read works on a directory a Log is
// writing to, and on a copied one.
func Read(dir string, f Filter, fn func(*Record) bool) error {
	segs, err := listSegments(dir)
	if err != nil {
		return err
	}
	var corrupt error
	for _, s := range segs {
		if !s.overlaps(f.Since, f.Until) {
			continue
		}
		more, err := readSegment(dir, s, &f, fn)
		if errors.Is(err, ErrCorrupt) {
			corrupt = errors.Join(corrupt, err)
		} else if err != nil {
			return err
		}
		if !more {
			break
		}
	}
	return corrupt
}

// ReadNewest returns the newest limit records in dir matching f, in seq order, reading
// segments newest first and stopping when it has enough. limit <= 0 falls back to f.Limit;
// when both are zero every matching record is returned.
func ReadNewest(dir string, f Filter, limit int) ([]Record, error) {
	if limit <= 0 {
		limit = f.Limit
	}
	segs, err := listSegments(dir)
	if err != nil {
		return nil, err
	}
	var chunks [][]Record // newest segment first
	var corrupt error
	total := 0
	for i := len(segs) - 1; i >= 0; i-- {
		s := segs[i]
		if !s.overlaps(f.Since, f.Until) {
			continue
		}
		need := 0
		if limit > 0 {
			need = limit - total
		}
		var got []Record
		_, err := readSegment(dir, s, &f, func(r *Record) bool {
			got = append(got, *r)
			// Keep only the newest need records of this segment, trimming in bulk.
			if need > 0 && len(got) >= 2*need+64 {
				got = got[:copy(got, got[len(got)-need:])]
			}
			return true
		})
		if errors.Is(err, ErrCorrupt) {
			corrupt = errors.Join(corrupt, err)
		} else if err != nil {
			return nil, err
		}
		if need > 0 && len(got) > need {
			got = got[len(got)-need:]
		}
		chunks = append(chunks, got)
		total += len(got)
		if limit > 0 && total >= limit {
			break
		}
	}
	out := make([]Record, 0, total)
	for _, c := range slices.Backward(chunks) {
		out = append(out, c...)
	}
	return out, corrupt
}

// readSegment calls fn with the segment's matching records. more is false when fn stopped.
func readSegment(dir string, s segment, f *Filter, fn func(*Record) bool) (more bool, err error) {
	file, err := openSegment(dir, s)
	if err != nil {
		return false, fmt.Errorf("audit: %w", err)
	}
	if file == nil {
		return true, nil // deleted by retention meanwhile
	}
	defer file.Close()
	br := bufio.NewReaderSize(file, 256<<10)
	pre := prefilterOf(f)
	var bad, badSinceGood int
	for {
		line, rerr := readLine(br)
		// A line without its newline is a torn tail (or one being written): skip it.
		if n := len(line); n > 0 && line[n-1] == '\n' {
			body := line[:n-1]
			if _, t, ok := quickHead(body); ok && (!inTime(f, t) || !pre.mayMatch(body)) {
				continue
			}
			r := new(Record)
			if err := r.UnmarshalJSON(body); err != nil || r.Seq == 0 {
				badSinceGood++
				continue
			}
			bad += badSinceGood
			badSinceGood = 0
			if f.Match(r) && !fn(r) {
				return false, nil
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return false, fmt.Errorf("audit: read %s: %w", s.name, rerr)
		}
	}
	if bad > 0 {
		return true, fmt.Errorf("%w: %d in %s", ErrCorrupt, bad, s.name)
	}
	return true, nil
}

func inTime(f *Filter, t time.Time) bool {
	return (f.Since.IsZero() || !t.Before(f.Since)) && (f.Until.IsZero() || t.Before(f.Until))
}

// prefilter rejects lines without decoding them, by fields a match needs to find literally in
// the line. AppendJSON escapes every quote inside a string, so a `"kind":"dns"` in the raw
// bytes can only be the kind field itself. It is applied only to lines that begin the way
// AppendJSON begins them.
type prefilter struct {
	all [][]byte // each must occur
	any [][]byte // one of them must occur, when set
}

func prefilterOf(f *Filter) prefilter {
	var p prefilter
	if f.Kind != "" {
		p.all = append(p.all, appendString(nil, "kind", string(f.Kind))[1:])
	}
	if f.Verdict != "" {
		p.any = append(p.any, appendString(nil, "verdict", f.Verdict)[1:])
		if f.Verdict == VerdictDeny {
			p.any = append(p.any, appendString(nil, "verdict", VerdictRefused)[1:])
		}
	}
	if f.Unlinked {
		p.all = append(p.all, appendQuoted(nil, FlagUnlinked))
	}
	if f.Origin.IsValid() {
		p.all = append(p.all, []byte(`"origin":{`))
	}
	if f.Device != "" {
		p.all = append(p.all, appendString(nil, "device", f.Device)[1:])
	}
	return p
}

func (p *prefilter) mayMatch(line []byte) bool {
	for _, b := range p.all {
		if !bytes.Contains(line, b) {
			return false
		}
	}
	if len(p.any) == 0 {
		return true
	}
	for _, b := range p.any {
		if bytes.Contains(line, b) {
			return true
		}
	}
	return false
}
