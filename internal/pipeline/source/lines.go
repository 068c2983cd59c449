// lines.go: the line reader under every format: bounded-length lines with their 1-based
// numbers, over-long lines skipped rather than buffered, and lines pushed back for re-reading
// after a quoted CSV field turned out not to close.

package source

import (
	"bufio"
	"bytes"
	"errors"
	"io"
)

// maxLineBytes bounds one physical line; a longer line becomes a failure and is skipped
// without being held in memory.
const maxLineBytes = 256 << 10

type line struct {
	text    []byte // without the trailing "\n" or "\r\n"; valid until the next call of next
	no      int64  // 1-based
	tooLong bool   // the line exceeded maxLineBytes; text is its start only
}

type lineReader struct {
	br     *bufio.Reader
	no     int64
	pushed []line // re-read before br, last first; owned copies
	bom    bool   // the UTF-8 byte-order mark has been checked
}

func newLineReader(br *bufio.Reader) *lineReader { return &lineReader{br: br} }

// next returns the next line, or io.EOF when there are none; other errors come from the
// underlying reader.
func (lr *lineReader) next() (line, error) {
	if n := len(lr.pushed); n > 0 {
		l := lr.pushed[n-1]
		lr.pushed = lr.pushed[:n-1]
		return l, nil
	}
	b, err := lr.br.ReadSlice('\n')
	tooLong := false
	if errors.Is(err, bufio.ErrBufferFull) {
		tooLong = true
		head := b[:min(len(b), 512)]
		// Skip the rest of the line without keeping it.
		for errors.Is(err, bufio.ErrBufferFull) {
			_, err = lr.br.ReadSlice('\n')
		}
		b = head
		if err == io.EOF {
			err = nil
		}
	}
	if err != nil && err != io.EOF {
		return line{}, err
	}
	if len(b) == 0 && err == io.EOF && !tooLong {
		return line{}, io.EOF
	}
	lr.no++
	if !lr.bom {
		lr.bom = true
		b = bytes.TrimPrefix(b, []byte("\xef\xbb\xbf"))
	}
	if !tooLong {
		b = bytes.TrimSuffix(b, []byte("\n"))
		b = bytes.TrimSuffix(b, []byte("\r"))
	}
	return line{text: b, no: lr.no, tooLong: tooLong}, nil
}

// pushBack queues owned copies of ls to be returned by next, in order, before reading on.
func (lr *lineReader) pushBack(ls []line) {
	for i := len(ls) - 1; i >= 0; i-- {
		lr.pushed = append(lr.pushed, ls[i])
	}
}
