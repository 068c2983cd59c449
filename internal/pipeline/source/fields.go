// fields.go: splitting one record into fields: RFC 4180 CSV (quoted fields, "" escapes,
// quoted newlines) and literal TSV, into reused buffers so a row costs no allocation here.

package source

import (
	"bytes"
	"errors"
	"fmt"
)

// errOpenQuote means the record ends inside a quoted field: the next line continues it.
var errOpenQuote = errors.New("unterminated quoted field")

type splitter struct {
	sep    byte
	quotes bool     // CSV: fields may be quoted; TSV: fields are literal
	buf    []byte   // unescaped field bytes, back to back
	ends   []int    // end offset of each field in buf
	fields [][]byte // views into buf, rebuilt by split
}

// split parses rec into s.fields. It returns errOpenQuote when a quoted field is still open
// at the end of rec, or an error naming the 1-based field with bad quoting.
func (s *splitter) split(rec []byte) error {
	s.buf, s.ends, s.fields = s.buf[:0], s.ends[:0], s.fields[:0]
	if !s.quotes {
		for {
			j := bytes.IndexByte(rec, s.sep)
			if j < 0 {
				s.buf = append(s.buf, rec...)
				s.ends = append(s.ends, len(s.buf))
				break
			}
			s.buf = append(s.buf, rec[:j]...)
			s.ends = append(s.ends, len(s.buf))
			rec = rec[j+1:]
		}
		s.view()
		return nil
	}
	i := 0
	for {
		field := len(s.ends) + 1
		// Spaces before an opening quote are tolerated (`a, "b"`); the quoted text is the field.
		q := i
		for q < len(rec) && rec[q] == ' ' {
			q++
		}
		if q < len(rec) && rec[q] == '"' {
			i = q + 1
			for {
				j := bytes.IndexByte(rec[i:], '"')
				if j < 0 {
					return errOpenQuote
				}
				s.buf = append(s.buf, rec[i:i+j]...)
				i += j + 1
				if i < len(rec) && rec[i] == '"' { // "" is a literal quote
					s.buf = append(s.buf, '"')
					i++
					continue
				}
				break
			}
			s.ends = append(s.ends, len(s.buf))
			for i < len(rec) && rec[i] == ' ' {
				i++
			}
			if i == len(rec) {
				break
			}
			if rec[i] != s.sep {
				return fmt.Errorf("bad quoting: text after the closing quote of field %d", field)
			}
			i++
			if i == len(rec) { // a trailing separator: one more, empty field
				s.ends = append(s.ends, len(s.buf))
				break
			}
			continue
		}
		j := bytes.IndexByte(rec[i:], s.sep)
		f := rec[i:]
		if j >= 0 {
			f = rec[i : i+j]
		}
		if bytes.IndexByte(f, '"') >= 0 {
			return fmt.Errorf("bad quoting: a quote inside unquoted field %d", field)
		}
		s.buf = append(s.buf, f...)
		s.ends = append(s.ends, len(s.buf))
		if j < 0 {
			break
		}
		i += j + 1
		if i == len(rec) {
			s.ends = append(s.ends, len(s.buf))
			break
		}
	}
	s.view()
	return nil
}

func (s *splitter) view() {
	start := 0
	for _, end := range s.ends {
		s.fields = append(s.fields, s.buf[start:end:end])
		start = end
	}
}
