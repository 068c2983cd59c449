// npy.go: query vectors from a NumPy .npy file (what numpy.save writes): float16, float32 or
// float64, little-endian, C order, one vector (D,) or one per row (N, D). The file is
// untrusted: its header is checked against its size before anything is allocated.

package search

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"
	"regexp"
	"strconv"
	"strings"

	"github.com/clipd/clipd/internal/cgo/blas"
	"github.com/clipd/clipd/internal/echo"
)

// maxNPYBytes bounds a query file: 64 MiB is 32,768 float32 queries of 512.
const maxNPYBytes = 64 << 20

var (
	npyDescrRe   = regexp.MustCompile(`'descr':\s*'([<|=]?[fF][248])'`)
	npyFortranRe = regexp.MustCompile(`'fortran_order':\s*(True|False)`)
	npyShapeRe   = regexp.MustCompile(`'shape':\s*\(\s*([0-9]+)\s*(?:,\s*([0-9]+)\s*)?,?\s*\)`)
)

// ReadNPY reads path's vectors as float32: rows x cols values (rows 1 for a 1-D array).
// Errors say what is wrong and what is wanted, in one line.
func ReadNPY(path string) (vals []float32, rows, cols int, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, 0, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, 0, 0, err
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%s: %s; want a float16/32/64 array of shape (D,) or (N, D) from numpy.save", echo.Short(path), fmt.Sprintf(format, args...))
	}
	var pre [10]byte
	if _, err := io.ReadFull(f, pre[:]); err != nil || string(pre[:6]) != "\x93NUMPY" {
		return nil, 0, 0, bad("not a .npy file")
	}
	var hlen, at int64
	switch pre[6] {
	case 1:
		hlen, at = int64(binary.LittleEndian.Uint16(pre[8:])), 10
	case 2, 3:
		var b [2]byte
		if _, err := io.ReadFull(f, b[:]); err != nil {
			return nil, 0, 0, bad("truncated header")
		}
		hlen, at = int64(binary.LittleEndian.Uint32(append(pre[8:10:10], b[:]...))), 12
	default:
		return nil, 0, 0, bad(".npy format version %d", pre[6])
	}
	if hlen > 1<<16 || at+hlen > st.Size() {
		return nil, 0, 0, bad("header of %d bytes in a file of %d", hlen, st.Size())
	}
	hb := make([]byte, hlen)
	if _, err := io.ReadFull(f, hb); err != nil {
		return nil, 0, 0, bad("truncated header")
	}
	h := string(hb)
	d, fo, sh := npyDescrRe.FindStringSubmatch(h), npyFortranRe.FindStringSubmatch(h), npyShapeRe.FindStringSubmatch(h)
	switch {
	case d == nil:
		return nil, 0, 0, bad("its dtype is not a little-endian float (%s)", echo.Short(strings.TrimSpace(h)))
	case fo == nil || fo[1] != "False":
		return nil, 0, 0, bad("it is not in C order")
	case sh == nil:
		return nil, 0, 0, bad("its shape is not (D,) or (N, D) (%s)", echo.Short(strings.TrimSpace(h)))
	}
	size, _ := strconv.Atoi(d[1][len(d[1])-1:])
	n1, err1 := strconv.ParseInt(sh[1], 10, 64)
	nrows, cols64 := int64(1), n1
	if sh[2] != "" {
		c, err2 := strconv.ParseInt(sh[2], 10, 64)
		if err2 != nil {
			err1 = err2
		}
		nrows, cols64 = n1, c
	}
	if err1 != nil || nrows <= 0 || cols64 <= 0 || cols64 > 1<<16 || nrows > maxNPYBytes || nrows*cols64*int64(size) > maxNPYBytes {
		return nil, 0, 0, bad("shape (%s) is empty or over %d MiB", strings.Trim(sh[0][len("'shape':"):], " ()"), maxNPYBytes>>20)
	}
	cols = int(cols64)
	n := int(nrows) * cols
	if want := at + hlen + int64(n*size); st.Size() != want {
		return nil, 0, 0, bad("%d bytes, want %d for its shape", st.Size(), want)
	}
	raw := make([]byte, n*size)
	if _, err := io.ReadFull(f, raw); err != nil {
		return nil, 0, 0, bad("truncated data")
	}
	vals = make([]float32, n)
	switch size {
	case 2:
		half := make([]uint16, n)
		for i := range half {
			half[i] = binary.LittleEndian.Uint16(raw[2*i:])
		}
		blas.Float16ToFloat32(half, vals)
	case 4:
		for i := range vals {
			vals[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
		}
	case 8:
		for i := range vals {
			vals[i] = float32(math.Float64frombits(binary.LittleEndian.Uint64(raw[8*i:])))
		}
	}
	return vals, int(nrows), cols, nil
}
