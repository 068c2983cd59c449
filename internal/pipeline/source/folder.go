// folder.go: a folder input: the image files under a directory, recursively, in a stable
// (lexical) order, streamed as rows of absolute paths through the same parser, sharding and
// limit as a list.

package source

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
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

// isImagePattern reports whether spec is a pattern whose every brace alternative names image
// files ('photos/*.jpg', 'img_{000..099}.png', '{a,b}/*.webp').
func isImagePattern(spec string) bool {
	if !hasPattern(spec) {
		return false
	}
	names, err := expandBraces(spec)
	if err != nil || len(names) == 0 {
		return false
	}
	for _, n := range names {
		if !isImageName(n) {
			return false
		}
	}
	return true
}

// openImagePattern streams the image files a pattern names ('photos/*.jpg',
// 'img_{000..099}.png'): braces expanded left to right, each glob's matches sorted, a file
// named twice read once; absolute paths, as a folder's rows. A name without glob characters
// must exist. The fingerprint covers the files' names, sizes and modification times.
func openImagePattern(ctx context.Context, spec string, opt Options) (*Source, error) {
	names, err := expandBraces(spec)
	if err != nil {
		return nil, fmt.Errorf("source %w", err)
	}
	var paths []string
	seen := map[string]bool{}
	for _, name := range names {
		matches := []string{name}
		if hasGlob(name) {
			if matches, err = filepath.Glob(name); err != nil {
				return nil, fmt.Errorf("source %s: bad pattern %s: %w", spec, name, err)
			}
		} else if _, err := os.Stat(name); err != nil {
			return nil, fmt.Errorf("source %s: %s: %w", spec, name, err)
		}
		for _, m := range matches {
			abs, err := filepath.Abs(m)
			if err != nil || seen[abs] || !isImageName(abs) || strings.ContainsAny(abs, "\r\n") {
				continue
			}
			if st, err := os.Stat(abs); err == nil && st.Mode().IsRegular() {
				seen[abs] = true
				paths = append(paths, abs)
			}
		}
	}
	if len(paths) == 0 {
		return nil, fmt.Errorf("source %s: the pattern matches no image file (%s); check the path, and quote the pattern", spec, strings.Join(ImageExtensions, " "))
	}
	h := sha256.New()
	for _, p := range paths {
		if st, err := os.Stat(p); err == nil {
			fmt.Fprintf(h, "%s\t%d\t%d\n", p, st.Size(), st.ModTime().UnixNano())
		}
	}
	fingerprint := fmt.Sprintf("files:%d sha256:%s", len(paths), hex.EncodeToString(h.Sum(nil)))
	body := strings.Join(paths, "\n") + "\n" // the names only: a pattern's matches are listed in memory anyway
	return start(ctx, io.NopCloser(strings.NewReader(body)), spec, "", opt,
		rowConfig{format: FormatText, localFiles: true, fingerprint: fingerprint, totalRows: int64(len(paths)), totalBytes: -1})
}
