// fingerprint.go: what identifies an input's content, so that a rerun can tell the same input
// from a changed one: a hash of a local file's bytes, of a folder's listing (names, sizes,
// modification times), of Open Images' cached metadata file; the validators an http(s)
// server sends. Standard input has none.

package source

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/clipd/clipd/internal/filehash"
)

// fileFingerprint hashes path's bytes: "sha256:<hex> size:<n>".
func fileFingerprint(path string) (string, int64, error) {
	sum, n, err := filehash.SHA256(path)
	if err != nil {
		return "", 0, err // an *fs.PathError: it names the file
	}
	return fmt.Sprintf("sha256:%s size:%d", sum, n), n, nil
}

// folderFingerprint hashes the listing of the image files under dir (relative name, size,
// modification time), the rows a folder input yields: "files:<n> sha256:<hex>". It stats
// every file but reads none.
func folderFingerprint(dir string) (string, int64, error) {
	h := sha256.New()
	var n int64
	err := walkImages(dir, func(p string, d fs.DirEntry) error {
		st, err := os.Stat(p) // follows links, as the read stage will
		if err != nil {
			return nil // the read stage reports it as the row's failure
		}
		rel, _ := filepath.Rel(dir, p)
		fmt.Fprintf(h, "%s\t%d\t%d\n", rel, st.Size(), st.ModTime().UnixNano())
		n++
		return nil
	})
	if err != nil {
		return "", 0, err
	}
	return fmt.Sprintf("files:%d sha256:%s", n, hex.EncodeToString(h.Sum(nil))), n, nil
}

// httpFingerprint is what the server says identifies the body: its ETag, Last-Modified and
// length, "" when it says none of them (the content can then not be checked).
func httpFingerprint(h http.Header, length int64) string {
	var parts []string
	if v := h.Get("ETag"); v != "" {
		parts = append(parts, "etag:"+v)
	}
	if v := h.Get("Last-Modified"); v != "" {
		parts = append(parts, "last-modified:"+v)
	}
	if len(parts) > 0 && length >= 0 {
		parts = append(parts, fmt.Sprintf("size:%d", length))
	}
	return strings.Join(parts, " ")
}
