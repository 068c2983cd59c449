// errors.go: the classes of every error this package and its users (the sink's writer,
// Finalize, merge, inspect) return, so that a caller maps them to exit codes in one place.
package outfile

import (
	"errors"
	"fmt"
	"os"

	"github.com/clipd/clipd/internal/cgo/h5"
)

// The classes of errors (errors.Is). Every error about a file is one of them.
var (
	// ErrInput: a file to read is missing, unreadable, not HDF5, or not a clipd output file.
	ErrInput = errors.New("bad input file")
	// ErrOutput matches every error of writing an output file: a full disk, a read-only
	// directory, an HDF5 write failure, a failed fsync or rename.
	ErrOutput = errors.New("output write failed")
	// ErrMismatch: files that must agree (to be merged) differ in model, weights, dtype,
	// embed dim or normalization, are runs of one input with other settings, or hold the
	// same shard.
	ErrMismatch = errors.New("inputs do not match")
)

// fileError is an error with its class: errors.Is matches the class and the cause.
type fileError struct {
	class error // ErrInput, ErrOutput or ErrMismatch
	msg   string
	cause error // nil when the message says it all
}

func (e *fileError) Error() string { return e.msg }

func (e *fileError) Unwrap() []error {
	if e.cause == nil {
		return []error{e.class}
	}
	return []error{e.class, e.cause}
}

// classified reports whether err already carries a class (and a path in its message).
func classified(err error) bool {
	var fe *fileError
	return errors.As(err, &fe) || errors.Is(err, ErrMismatch)
}

// systemCause is the system error under err when there is one ("no space left on device"),
// else err.
func systemCause(err error) error {
	var he *h5.Error
	var pe *os.PathError
	var le *os.LinkError
	switch {
	case errors.As(err, &he) && he.Errno != 0:
		return he.Errno
	case errors.As(err, &pe):
		return pe.Err
	case errors.As(err, &le):
		return le.Err
	}
	return err
}

// WrapWrite is "writing PATH: cause" (ErrOutput), with the system error underneath as the
// cause when there is one; nil stays nil and a classified error is returned as it is.
func WrapWrite(path string, err error) error {
	if err == nil || classified(err) {
		return err
	}
	cause := systemCause(err)
	return &fileError{class: ErrOutput, msg: "writing " + path + ": " + cause.Error(), cause: cause}
}

// WrapRead is "reading PATH: err" (ErrInput); nil stays nil and a classified error is
// returned as it is.
func WrapRead(path string, err error) error {
	if err == nil || classified(err) {
		return err
	}
	return &fileError{class: ErrInput, msg: "reading " + path + ": " + err.Error(), cause: err}
}

// InputErrorf is an ErrInput error with the message given: say which file and what is
// wrong with it.
func InputErrorf(format string, args ...any) error {
	return &fileError{class: ErrInput, msg: fmt.Sprintf(format, args...)}
}

// MismatchErrorf is an ErrMismatch error with the message given: name both files and
// what differs.
func MismatchErrorf(format string, args ...any) error {
	return &fileError{class: ErrMismatch, msg: fmt.Sprintf(format, args...)}
}

// UnfinishedRun is the ErrInput error of an output folder that holds chunk files only.
func UnfinishedRun(dir string, chunks int) error {
	return InputErrorf("%s holds an unfinished run (%d chunk files): rerun the same clipd embed to finish it", dir, chunks)
}

// Open opens a clipd file for reading. Its errors are ErrInput and one line each:
// "PATH: no such file or directory", "PATH: not an HDF5 file (or unreadable); give a clipd
// output file".
func Open(path string) (*h5.File, error) {
	st, err := os.Stat(path)
	if err != nil {
		cause := systemCause(err)
		return nil, &fileError{class: ErrInput, msg: path + ": " + cause.Error(), cause: cause}
	}
	if st.IsDir() {
		return nil, InputErrorf("%s: is a directory; give a clipd output file", path)
	}
	f, err := h5.Open(path)
	if err != nil {
		var he *h5.Error
		if errors.As(err, &he) && he.Errno != 0 {
			return nil, &fileError{class: ErrInput, msg: path + ": " + he.Errno.Error(), cause: err}
		}
		// HDF5's own stack ("file signature not found") is kept as the cause, not shown.
		return nil, &fileError{class: ErrInput, msg: path + ": not an HDF5 file (or unreadable); give a clipd output file", cause: err}
	}
	return f, nil
}
