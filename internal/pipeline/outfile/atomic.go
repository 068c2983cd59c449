// atomic.go: atomic writes. A file is written as PATH.tmp, fsynced, renamed to PATH and the
// directory fsynced, so PATH is either absent or complete on disk, whatever crashes when.
package outfile

import (
	"errors"
	"os"
	"path/filepath"

	"github.com/clipd/clipd/internal/cgo/h5"
)

// File is an HDF5 file being written to Path()+".tmp"; Commit completes it at Path().
type File struct {
	f         *h5.File
	tmp, path string
	tables    []*TableFile
	checksum  bool // Commit writes PATH.sha256 (CommitWithChecksum)
}

// Create starts writing path: it creates (truncates) path.tmp. Errors are ErrOutput.
func Create(path string) (*File, error) {
	tmp := path + tmpSuffix
	f, err := h5.Create(tmp)
	if err != nil {
		return nil, WrapWrite(tmp, err)
	}
	return &File{f: f, tmp: tmp, path: path}, nil
}

// Path is where Commit puts the file; Tmp is where it is written until then.
func (f *File) Path() string { return f.path }

// Tmp is the temporary file being written.
func (f *File) Tmp() string { return f.tmp }

// CreateTable creates t's datasets in f with rows rows (0 when appending), in HDF5 chunks of
// at most maxChunkRows rows, with a chunk cache of cache bytes per numeric dataset (an
// eighth of it per string dataset). Commit flushes and closes it. Errors are ErrOutput.
func (f *File) CreateTable(t Table, rows int64, maxChunkRows, cache int) (*TableFile, error) {
	tf, err := createTable(f.f, t, rows, maxChunkRows, cache)
	if err != nil {
		return nil, err
	}
	f.tables = append(f.tables, tf)
	return tf, nil
}

// Commit completes the file: it appends each table's pending rows, writes attrs, closes the
// tables and the file, fsyncs it, renames it into place and fsyncs the directory. After it
// returns nil, Path() is complete on disk; on an error (ErrOutput) the temporary is removed.
func (f *File) Commit(attrs Attrs) error {
	err := f.commit(attrs)
	if err != nil {
		f.Abort()
	}
	return err
}

// CommitWithChecksum is Commit, and before the rename it writes PATH.sha256 (ChecksumPath)
// with the sha256 of the file's bytes, so that a later reader can tell that the file is the
// one written, whole and unchanged (VerifyChecksum), before libhdf5 reads any of it.
func (f *File) CommitWithChecksum(attrs Attrs) error {
	f.checksum = true
	return f.Commit(attrs)
}

func (f *File) commit(attrs Attrs) error {
	for _, tf := range f.tables {
		if err := tf.Flush(); err != nil {
			return err
		}
	}
	if err := writeAttrs(f.f, attrs); err != nil {
		return WrapWrite(f.tmp, err)
	}
	for _, tf := range f.tables {
		if err := tf.Close(); err != nil {
			return err
		}
	}
	if err := f.f.Close(); err != nil {
		return WrapWrite(f.tmp, err)
	}
	if err := syncFile(f.tmp); err != nil {
		return WrapWrite(f.tmp, err)
	}
	if f.checksum {
		sum, err := fileSHA256(f.tmp)
		if err != nil {
			return WrapWrite(f.tmp, err)
		}
		if err := WriteFile(ChecksumPath(f.path), []byte(sum+"\n")); err != nil {
			return err
		}
	}
	if err := os.Rename(f.tmp, f.path); err != nil {
		return WrapWrite(f.path, err)
	}
	return SyncDir(filepath.Dir(f.path))
}

// Abort closes the file and removes the temporary: a file that cannot be completed leaves
// nothing behind. Safe after Commit.
func (f *File) Abort() {
	for _, tf := range f.tables {
		tf.Close()
	}
	f.f.Close()
	os.Remove(f.tmp)
}

// WriteFile writes data to path atomically (tmp, fsync, rename, fsync the directory).
// Errors are ErrOutput.
func WriteFile(path string, data []byte) error {
	tmp := path + tmpSuffix
	f, err := os.Create(tmp)
	if err != nil {
		return WrapWrite(tmp, err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return WrapWrite(tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return WrapWrite(path, err)
	}
	return SyncDir(filepath.Dir(path))
}

// Remove removes path (absent is fine). Errors are ErrOutput.
func Remove(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return WrapWrite(path, err)
	}
	return nil
}

// syncFile fsyncs path.
func syncFile(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// SyncDir fsyncs a directory so that a rename or removal in it is durable. Errors are
// ErrOutput.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return WrapWrite(dir, err)
	}
	err = d.Sync()
	d.Close()
	return WrapWrite(dir, err)
}
