// h5.go: the Go side of the binding: File, Dataset and their typed reads and writes over
// shim.c. HDF5 failures become *Error values here and nowhere else.

package h5

/*
#cgo pkg-config: hdf5
#include <stdlib.h>
#include "shim.h"
*/
import "C"

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
	"sync"
	"syscall"
	"unsafe"
)

// Kind is the element type of a dataset.
type Kind int

// The element kinds clipd writes and reads.
const (
	Float32 Kind = C.H5S_KIND_FLOAT32 // IEEE binary32, little endian
	Float16 Kind = C.H5S_KIND_FLOAT16 // IEEE binary16, little endian (numpy float16)
	Int64   Kind = C.H5S_KIND_INT64   // signed 64-bit integers (any integer type when reading)
	String  Kind = C.H5S_KIND_STRING  // variable-length UTF-8 strings
)

func (k Kind) String() string {
	switch k {
	case Float32:
		return "float32"
	case Float16:
		return "float16"
	case Int64:
		return "int64"
	case String:
		return "string"
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// Size is the bytes of one numeric element (0 for strings).
func (k Kind) Size() int {
	switch k {
	case Float32:
		return 4
	case Float16:
		return 2
	case Int64:
		return 8
	}
	return 0
}

// mu serialises every HDF5 call. Debian's library is built thread-safe through one global
// lock anyway; this keeps the binding correct with a build that is not.
var mu sync.Mutex

const errLen = 2048

// Error is a failed HDF5 call: the operation, the object, HDF5's error stack, and the errno
// of the system call underneath when the stack names one (a full disk: ENOSPC).
type Error struct {
	Op    string
	Path  string // file, or file:/dataset
	Stack string
	Errno syscall.Errno
}

// Error names the operation and object, then the errno's text when there is one ("no
// space left on device"), else HDF5's error stack.
func (e *Error) Error() string {
	if e.Errno != 0 {
		return fmt.Sprintf("hdf5 %s %s: %s", e.Op, e.Path, e.Errno.Error())
	}
	return fmt.Sprintf("hdf5 %s %s: %s", e.Op, e.Path, e.Stack)
}

// Unwrap exposes the errno for errors.Is(err, syscall.ENOSPC).
func (e *Error) Unwrap() error {
	if e.Errno != 0 {
		return e.Errno
	}
	return nil
}

var errnoRe = regexp.MustCompile(`errno = (\d+)`)

func newError(op, path string, buf []byte) error {
	n := 0
	for n < len(buf) && buf[n] != 0 {
		n++
	}
	e := &Error{Op: op, Path: path, Stack: string(buf[:n])}
	if m := errnoRe.FindStringSubmatch(e.Stack); m != nil {
		if v, err := strconv.Atoi(m[1]); err == nil && v != 0 {
			e.Errno = syscall.Errno(v)
		}
	}
	return e
}

// call runs fn under the lock with an error buffer; a negative result becomes an *Error.
func call(op, path string, fn func(err *C.char, n C.size_t) C.longlong) (int64, error) {
	var buf [errLen]byte
	mu.Lock()
	r := fn((*C.char)(unsafe.Pointer(&buf[0])), C.size_t(len(buf)))
	mu.Unlock()
	if r < 0 {
		return int64(r), newError(op, path, buf[:])
	}
	return int64(r), nil
}

// File is an open HDF5 file.
type File struct {
	id    C.hid_t
	path  string
	write bool
}

// Create creates (truncates) path for writing.
func Create(path string) (*File, error) {
	cp := C.CString(path)
	defer C.free(unsafe.Pointer(cp))
	id, err := call("create", path, func(e *C.char, n C.size_t) C.longlong {
		return C.longlong(C.h5s_file_create(cp, e, n))
	})
	if err != nil {
		return nil, err
	}
	return &File{id: C.hid_t(id), path: path, write: true}, nil
}

// Open opens path read-only.
func Open(path string) (*File, error) {
	cp := C.CString(path)
	defer C.free(unsafe.Pointer(cp))
	id, err := call("open", path, func(e *C.char, n C.size_t) C.longlong {
		return C.longlong(C.h5s_file_open(cp, 0, e, n))
	})
	if err != nil {
		return nil, err
	}
	return &File{id: C.hid_t(id), path: path}, nil
}

// Path is the file's path.
func (f *File) Path() string { return f.path }

// Close closes the file, flushing what HDF5 still holds; safe to call twice. Datasets
// still open keep the file open in HDF5 until they are closed too.
func (f *File) Close() error {
	if f == nil || f.id < 0 {
		return nil
	}
	id := f.id
	f.id = -1
	_, err := call("close", f.path, func(e *C.char, n C.size_t) C.longlong {
		return C.longlong(C.h5s_file_close(id, e, n))
	})
	return err
}

// Has reports whether the file has an object called name.
func (f *File) Has(name string) (bool, error) {
	cn := C.CString(name)
	defer C.free(unsafe.Pointer(cn))
	r, err := call("exists", f.path+":"+name, func(e *C.char, n C.size_t) C.longlong {
		return C.longlong(C.h5s_exists(f.id, cn, e, n))
	})
	return r == 1, err
}

// DatasetOptions describe a new dataset: Rows x Cols elements (Cols 0: one dimension), the
// rows growing without limit, stored in chunks of ChunkRows rows, optionally deflated
// (level 1-9), with a chunk cache of CacheBytes (0: HDF5's default, 1 MiB).
type DatasetOptions struct {
	Kind       Kind
	Rows       int64
	Cols       int
	ChunkRows  int
	Deflate    int
	CacheBytes int
}

// Dataset is an open dataset.
type Dataset struct {
	id        C.hid_t
	path      string
	kind      Kind
	rows      int64
	cols      int
	elemBytes int64 // bytes per element in the file (16 for a string's heap reference)
	storage   int64 // bytes allocated in the file for the elements
}

// CreateDataset creates dataset name in f.
func (f *File) CreateDataset(name string, o DatasetOptions) (*Dataset, error) {
	if o.ChunkRows < 1 {
		o.ChunkRows = 1024
	}
	cn := C.CString(name)
	defer C.free(unsafe.Pointer(cn))
	p := f.path + ":" + name
	id, err := call("create dataset", p, func(e *C.char, n C.size_t) C.longlong {
		return C.longlong(C.h5s_dataset_create(f.id, cn, C.int(o.Kind), C.hsize_t(o.Rows), C.hsize_t(o.Cols),
			C.hsize_t(o.ChunkRows), C.int(o.Deflate), C.size_t(o.CacheBytes), e, n))
	})
	if err != nil {
		return nil, err
	}
	return &Dataset{id: C.hid_t(id), path: p, kind: o.Kind, rows: o.Rows, cols: o.Cols}, nil
}

// OpenDataset opens dataset name of f with a chunk cache of cacheBytes (0: HDF5's default).
func (f *File) OpenDataset(name string, cacheBytes int) (*Dataset, error) {
	cn := C.CString(name)
	defer C.free(unsafe.Pointer(cn))
	p := f.path + ":" + name
	var kind C.int
	var rows, cols, storage C.hsize_t
	var elem C.size_t
	id, err := call("open dataset", p, func(e *C.char, n C.size_t) C.longlong {
		return C.longlong(C.h5s_dataset_open(f.id, cn, C.size_t(cacheBytes), &kind, &rows, &cols, &elem, &storage, e, n))
	})
	if err != nil {
		return nil, err
	}
	d := &Dataset{id: C.hid_t(id), path: p, kind: Kind(kind), rows: int64(rows), cols: int(cols),
		elemBytes: int64(elem), storage: int64(storage)}
	// Dimensions past int64 (or a width past int) are not a file anyone wrote: refuse them
	// here, before any size is computed from them.
	if uint64(rows) > math.MaxInt64>>8 || uint64(cols) > math.MaxInt32 || int64(storage) < 0 {
		d.Close()
		return nil, fmt.Errorf("%s: dimensions %d x %d (%d bytes stored) are out of range: the file is damaged", p, uint64(rows), uint64(cols), uint64(storage))
	}
	return d, nil
}

// FileBytes is how many bytes the dataset's elements take in the file, uncompressed: rows x
// cols x the element's size (16 per string, the heap reference; the strings themselves live
// in the file's heap). It saturates at math.MaxInt64.
func (d *Dataset) FileBytes() int64 {
	n := uint64(d.rows)
	for _, m := range []uint64{uint64(d.width()), uint64(d.elemBytes)} {
		if m != 0 && n > math.MaxInt64/m {
			return math.MaxInt64
		}
		n *= m
	}
	return int64(n)
}

// StorageBytes is how many bytes the file holds for the dataset's elements (compressed);
// 0 when none are written.
func (d *Dataset) StorageBytes() int64 { return d.storage }

// Kind is the dataset's element kind.
func (d *Dataset) Kind() Kind { return d.kind }

// Rows is the dataset's first dimension.
func (d *Dataset) Rows() int64 { return d.rows }

// Cols is the second dimension (0 for a one-dimensional dataset).
func (d *Dataset) Cols() int { return d.cols }

func (d *Dataset) width() int {
	if d.cols == 0 {
		return 1
	}
	return d.cols
}

// Close closes the dataset; safe to call twice.
func (d *Dataset) Close() error {
	if d == nil || d.id < 0 {
		return nil
	}
	id := d.id
	d.id = -1
	_, err := call("close dataset", d.path, func(e *C.char, n C.size_t) C.longlong {
		return C.longlong(C.h5s_dataset_close(id, e, n))
	})
	return err
}

// SetRows changes the first dimension (H5Dset_extent).
func (d *Dataset) SetRows(rows int64) error {
	_, err := call("set extent", d.path, func(e *C.char, n C.size_t) C.longlong {
		return C.longlong(C.h5s_dataset_set_rows(d.id, C.hsize_t(rows), C.hsize_t(d.cols), e, n))
	})
	if err == nil {
		d.rows = rows
	}
	return err
}

func (d *Dataset) grow(end int64) error {
	if end > d.rows {
		return d.SetRows(end)
	}
	return nil
}

func (d *Dataset) checkRange(start int64, n int) error {
	if start < 0 || n < 0 || start+int64(n) > d.rows {
		return fmt.Errorf("%s: rows [%d, %d) outside the dataset's %d rows", d.path, start, start+int64(n), d.rows)
	}
	return nil
}

// WriteRaw writes n rows starting at row start from b, which holds n x Cols elements of the
// dataset's numeric kind in little-endian order; the dataset grows when needed.
func (d *Dataset) WriteRaw(start int64, n int, b []byte) error {
	if d.kind == String {
		return fmt.Errorf("%s: WriteRaw on a string dataset", d.path)
	}
	if want := n * d.width() * d.kind.Size(); len(b) != want {
		return fmt.Errorf("%s: %d bytes for %d rows, want %d", d.path, len(b), n, want)
	}
	if n == 0 {
		return nil
	}
	if err := d.grow(start + int64(n)); err != nil {
		return err
	}
	_, err := call("write", d.path, func(e *C.char, en C.size_t) C.longlong {
		return C.longlong(C.h5s_write(d.id, C.int(d.kind), C.hsize_t(start), C.hsize_t(n), C.hsize_t(d.cols),
			unsafe.Pointer(&b[0]), e, en))
	})
	return err
}

// ReadRaw reads n rows starting at start into b (n x Cols elements of the dataset's kind).
func (d *Dataset) ReadRaw(start int64, n int, b []byte) error {
	if d.kind == String {
		return fmt.Errorf("%s: ReadRaw on a string dataset", d.path)
	}
	if want := n * d.width() * d.kind.Size(); len(b) != want {
		return fmt.Errorf("%s: %d bytes for %d rows, want %d", d.path, len(b), n, want)
	}
	if err := d.checkRange(start, n); err != nil || n == 0 {
		return err
	}
	_, err := call("read", d.path, func(e *C.char, en C.size_t) C.longlong {
		return C.longlong(C.h5s_read(d.id, C.int(d.kind), C.hsize_t(start), C.hsize_t(n), C.hsize_t(d.cols),
			unsafe.Pointer(&b[0]), e, en))
	})
	return err
}

// WriteFloat32 writes len(v)/Cols rows of a Float32 or Float16 dataset (converted to half
// precision, rounding to nearest even, for Float16).
func (d *Dataset) WriteFloat32(start int64, v []float32) error {
	w := d.width()
	if len(v)%w != 0 {
		return fmt.Errorf("%s: %d values is not a whole number of %d-wide rows", d.path, len(v), w)
	}
	switch d.kind {
	case Float32:
		return d.WriteRaw(start, len(v)/w, float32Bytes(v))
	case Float16:
		h := make([]uint16, len(v))
		for i, x := range v {
			h[i] = Float32ToFloat16(x)
		}
		return d.WriteRaw(start, len(v)/w, uint16Bytes(h))
	}
	return fmt.Errorf("%s: WriteFloat32 on a %s dataset", d.path, d.kind)
}

// ReadFloat32 reads n rows of a Float32 or Float16 dataset as float32.
func (d *Dataset) ReadFloat32(start int64, n int) ([]float32, error) {
	out := make([]float32, n*d.width())
	switch d.kind {
	case Float32:
		return out, d.ReadRaw(start, n, float32Bytes(out))
	case Float16:
		h := make([]uint16, len(out))
		if err := d.ReadRaw(start, n, uint16Bytes(h)); err != nil {
			return nil, err
		}
		for i, x := range h {
			out[i] = Float16ToFloat32(x)
		}
		return out, nil
	}
	return nil, fmt.Errorf("%s: ReadFloat32 on a %s dataset", d.path, d.kind)
}

// WriteInt64 writes len(v) values of a one-dimensional Int64 dataset.
func (d *Dataset) WriteInt64(start int64, v []int64) error {
	if d.kind != Int64 || d.cols != 0 {
		return fmt.Errorf("%s: WriteInt64 on a %s dataset", d.path, d.kind)
	}
	return d.WriteRaw(start, len(v), int64Bytes(v))
}

// ReadInt64 reads n values of a one-dimensional Int64 dataset.
func (d *Dataset) ReadInt64(start int64, n int) ([]int64, error) {
	if d.kind != Int64 || d.cols != 0 {
		return nil, fmt.Errorf("%s: ReadInt64 on a %s dataset", d.path, d.kind)
	}
	out := make([]int64, n)
	return out, d.ReadRaw(start, n, int64Bytes(out))
}

// WriteStrings writes s at rows [start, start+len(s)) of a String dataset. A string is
// stored up to its first NUL byte (HDF5 strings are C strings).
func (d *Dataset) WriteStrings(start int64, s []string) error {
	if d.kind != String {
		return fmt.Errorf("%s: WriteStrings on a %s dataset", d.path, d.kind)
	}
	if len(s) == 0 {
		return nil
	}
	total := 0
	for _, x := range s {
		total += len(x) + 1
	}
	packed := make([]byte, total)
	offs := make([]C.size_t, len(s))
	at := 0
	for i, x := range s {
		offs[i] = C.size_t(at)
		at += copy(packed[at:], x) + 1
	}
	if err := d.grow(start + int64(len(s))); err != nil {
		return err
	}
	_, err := call("write", d.path, func(e *C.char, en C.size_t) C.longlong {
		return C.longlong(C.h5s_write_strings(d.id, C.hsize_t(start), C.hsize_t(len(s)),
			(*C.char)(unsafe.Pointer(&packed[0])), &offs[0], e, en))
	})
	return err
}

// ReadStrings reads n strings starting at row start.
func (d *Dataset) ReadStrings(start int64, n int) ([]string, error) {
	if d.kind != String {
		return nil, fmt.Errorf("%s: ReadStrings on a %s dataset", d.path, d.kind)
	}
	if err := d.checkRange(start, n); err != nil || n == 0 {
		return nil, err
	}
	offs := make([]C.size_t, n)
	var packed *C.char
	_, err := call("read", d.path, func(e *C.char, en C.size_t) C.longlong {
		return C.longlong(C.h5s_read_strings(d.id, C.hsize_t(start), C.hsize_t(n), &packed, &offs[0], e, en))
	})
	if err != nil {
		return nil, err
	}
	defer C.h5s_free(unsafe.Pointer(packed))
	out := make([]string, n)
	for i := range out {
		out[i] = C.GoString((*C.char)(unsafe.Add(unsafe.Pointer(packed), offs[i])))
	}
	return out, nil
}

// Attr is one attribute: Value is a string, int64, float64, bool, or nil for a type this
// binding does not read (arrays, compounds).
type Attr struct {
	Name  string
	Value any
}

// SetAttr sets a scalar attribute on the file's root group: v is a string (UTF-8), an int,
// an int64, or a bool (stored like h5py's numpy bool: an int8 enum FALSE/TRUE).
func (f *File) SetAttr(name string, v any) error {
	cn := C.CString(name)
	defer C.free(unsafe.Pointer(cn))
	p := f.path + ":@" + name
	var fn func(e *C.char, n C.size_t) C.longlong
	switch x := v.(type) {
	case string:
		cv := C.CString(x)
		defer C.free(unsafe.Pointer(cv))
		fn = func(e *C.char, n C.size_t) C.longlong { return C.longlong(C.h5s_attr_set_string(f.id, cn, cv, e, n)) }
	case int:
		fn = func(e *C.char, n C.size_t) C.longlong {
			return C.longlong(C.h5s_attr_set_int(f.id, cn, C.longlong(x), e, n))
		}
	case int64:
		fn = func(e *C.char, n C.size_t) C.longlong {
			return C.longlong(C.h5s_attr_set_int(f.id, cn, C.longlong(x), e, n))
		}
	case bool:
		b := 0
		if x {
			b = 1
		}
		fn = func(e *C.char, n C.size_t) C.longlong {
			return C.longlong(C.h5s_attr_set_bool(f.id, cn, C.int(b), e, n))
		}
	default:
		return fmt.Errorf("%s: attribute of type %T not supported", p, v)
	}
	_, err := call("set attribute", p, fn)
	return err
}

// maxAttrs bounds the root group's attributes that Attrs reads (clipd writes about 15).
const maxAttrs = 4096

// Attrs returns the root group's attributes in name order.
func (f *File) Attrs() ([]Attr, error) {
	count, err := call("count attributes", f.path, func(e *C.char, n C.size_t) C.longlong {
		return C.longlong(C.h5s_attr_count(f.id, e, n))
	})
	if err != nil {
		return nil, err
	}
	if count > maxAttrs {
		return nil, fmt.Errorf("%s: %d attributes on the root group (at most %d): the file is damaged", f.path, count, maxAttrs)
	}
	var out []Attr
	for i := 0; i < int(count); i++ {
		var name [256]byte
		var typ C.int
		var ival C.longlong
		var fval C.double
		var sval *C.char
		_, err := call("read attribute", f.path, func(e *C.char, n C.size_t) C.longlong {
			return C.longlong(C.h5s_attr_get(f.id, C.int(i), (*C.char)(unsafe.Pointer(&name[0])), C.size_t(len(name)),
				&typ, &ival, &fval, &sval, e, n))
		})
		if err != nil {
			return nil, err
		}
		a := Attr{Name: C.GoString((*C.char)(unsafe.Pointer(&name[0])))}
		switch typ {
		case C.H5S_ATTR_STRING:
			a.Value = C.GoString(sval)
			C.h5s_free(unsafe.Pointer(sval))
		case C.H5S_ATTR_INT:
			a.Value = int64(ival)
		case C.H5S_ATTR_FLOAT:
			a.Value = float64(fval)
		case C.H5S_ATTR_BOOL:
			a.Value = ival != 0
		}
		out = append(out, a)
	}
	return out, nil
}

func float32Bytes(v []float32) []byte {
	if len(v) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&v[0])), len(v)*4)
}

func uint16Bytes(v []uint16) []byte {
	if len(v) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&v[0])), len(v)*2)
}

func int64Bytes(v []int64) []byte {
	if len(v) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&v[0])), len(v)*8)
}

// Float32ToFloat16 converts to IEEE half precision bits, rounding to nearest even (as
// numpy's astype(float16)); overflow gives infinity, NaN stays NaN.
func Float32ToFloat16(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int32(b>>23) & 0xff
	mant := b & 0x7fffff
	if exp == 0xff { // inf or NaN
		if mant != 0 {
			return sign | 0x7e00
		}
		return sign | 0x7c00
	}
	e := exp - 127 + 15
	if e >= 0x1f {
		return sign | 0x7c00
	}
	if e <= 0 { // subnormal half or zero
		if e < -10 {
			return sign
		}
		m := mant | 0x800000
		shift := uint32(14 - e)
		half := m >> shift
		rem := m & (1<<shift - 1)
		mid := uint32(1) << (shift - 1)
		if rem > mid || (rem == mid && half&1 == 1) {
			half++
		}
		return sign | uint16(half)
	}
	half := uint32(e)<<10 | mant>>13
	rem := mant & 0x1fff
	if rem > 0x1000 || (rem == 0x1000 && half&1 == 1) {
		half++ // may carry into the exponent, up to infinity: correct
	}
	return sign | uint16(half)
}

// Float16ToFloat32 converts IEEE half precision bits to float32 (exact).
func Float16ToFloat32(h uint16) float32 {
	sign := uint32(h&0x8000) << 16
	exp := uint32(h>>10) & 0x1f
	mant := uint32(h & 0x3ff)
	switch {
	case exp == 0x1f:
		return math.Float32frombits(sign | 0x7f800000 | mant<<13)
	case exp == 0:
		if mant == 0 {
			return math.Float32frombits(sign)
		}
		// subnormal: normalise
		e := uint32(127 - 15 + 1)
		for mant&0x400 == 0 {
			mant <<= 1
			e--
		}
		return math.Float32frombits(sign | e<<23 | (mant&0x3ff)<<13)
	}
	return math.Float32frombits(sign | (exp+127-15)<<23 | mant<<13)
}
