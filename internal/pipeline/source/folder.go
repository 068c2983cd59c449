// folder.go: a folder input: the image files under a directory, recursively, in a stable
// (lexical) order, streamed as rows of absolute paths through the same parser, sharding and
// limit as a list.

package source

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"
	"strings"
)

// ImageExtensions are the file name extensions a folder input reads (any case).
var ImageExtensions = []string{".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp"}

func isImageName(name string) bool {
	ext := strings.ToLower(filepath.Ext(name))
	for _, e := range ImageExtensions {
		if ext == e {
			return true
		}
	}
	return false
}

// openFolder streams the image files under dir. A first walk stats every file for the
// folder's fingerprint and row count; the second runs as the rows are read, so a folder of
// millions of files is never listed in memory; an unreadable subfolder ends the stream with
// its error (Source.Err), as a read error ends a list.
func openFolder(ctx context.Context, dir string, opt Options) (*Source, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	fingerprint, count, err := folderFingerprint(abs)
	if err != nil {
		return nil, fmt.Errorf("source %s: %w", dir, err)
	}
	pr, pw := io.Pipe()
	go func() {
		bw := bufio.NewWriterSize(pw, 64<<10)
		err := walkImages(abs, func(p string, d fs.DirEntry) error {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			bw.WriteString(p)
			return bw.WriteByte('\n')
		})
		if err == nil {
			err = bw.Flush()
		}
		pw.CloseWithError(err)
	}()
	return start(ctx, pr, dir, "", opt, rowConfig{format: FormatText, localFiles: true, fingerprint: fingerprint, totalRows: count, totalBytes: -1})
}

// walkImages calls fn for every image file under dir (not following links to folders), in
// lexical order. Names with a line break cannot travel as a row; such files are rare enough
// to skip.
func walkImages(dir string, fn func(p string, d fs.DirEntry) error) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || !isImageName(p) || strings.ContainsAny(p, "\r\n") {
			return nil
		}
		if d.Type()&fs.ModeSymlink == 0 && !d.Type().IsRegular() {
			return nil
		}
		return fn(p, d)
	})
}
