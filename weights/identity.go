// identity.go: a weights file's sha256 as a run's identity records it: always the hash of
// the file's own bytes, never a sidecar FILE.sha256 alone (a file swapped under its sidecar
// would pass for the old one), remembered per version of the file in clipd's cache so that
// an unchanged file is read once, not at every run.

package weights

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"time"
)

// FileVersion is what tells one version of a file from another without reading it: the
// device and inode (a file replaced by a rename or a copy to a new file), the size, and the
// modification and change times in nanoseconds. The change time is set by the kernel on
// every write and every chmod/utime and cannot be set back, so a file rewritten in place
// with its mtime restored (cp -p, rsync -t --inplace) is still another version.
type FileVersion struct {
	Dev     uint64 `json:"dev"`
	Ino     uint64 `json:"ino"`
	Size    int64  `json:"size"`
	MtimeNS int64  `json:"mtime_ns"`
	CtimeNS int64  `json:"ctime_ns"`
}

// Identity is a weights file's sha256 and the version of the file it was taken from.
type Identity struct {
	File    string
	SHA256  string
	Version FileVersion
	// Hashed: the file was read and hashed now (false: the hash of this very version was
	// remembered from an earlier run).
	Hashed bool
	// Recorded is the sha256 its FILE.sha256 sidecar (or the cache manifest) records, ""
	// when none; when it differs from SHA256 the file was replaced or damaged since it was
	// fetched, and SHA256 is the truth.
	Recorded string
}

// hashesDir is the folder of clipd's cache that remembers hashes, one small JSON file per
// file version (named after its device and inode).
const hashesDir = "hashes"

// racyWindow: a hash is remembered only for a file whose last change is at least this old.
// A file changed again within the same timestamp granule as the remembered version would
// look unchanged (the "racy git" problem); timestamps are at worst 2 s coarse (FAT).
var racyWindow = 2 * time.Second

// hashCount counts the weights files read and hashed by FileSHA256 (tests check that an
// unchanged file is not read again).
var hashCount atomic.Int64

// hashRecord is the remembered hash of one file version.
type hashRecord struct {
	Path    string      `json:"path"` // where it was seen (for a reader; the key is the version)
	Version FileVersion `json:"version"`
	SHA256  string      `json:"sha256"`
}

// StatVersion returns the version of file (following symlinks).
func StatVersion(file string) (FileVersion, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(file, &st); err != nil {
		return FileVersion{}, &os.PathError{Op: "stat", Path: file, Err: err}
	}
	return FileVersion{
		Dev: uint64(st.Dev), Ino: uint64(st.Ino), Size: st.Size,
		MtimeNS: st.Mtim.Nano(), CtimeNS: st.Ctim.Nano(),
	}, nil
}

// FileSHA256 returns the identity of the weights file: its sha256, from the hash remembered
// in clipd's cache (cacheDir as for CacheDir) for exactly this version of the file, else by
// reading the file (and remembering the result when the cache can be written; a cache that
// cannot is no error, the file is then hashed at every run). A file that changes while it
// is read is an error.
func FileSHA256(file, cacheDir string) (Identity, error) {
	id := Identity{File: file, Recorded: RecordedSHA256(file)}
	v, err := StatVersion(file)
	if err != nil {
		return id, newErr(ErrMissing, err, fmt.Sprintf("weights: %v", err))
	}
	recPath := ""
	if root, err := CacheDir(cacheDir); err == nil {
		recPath = filepath.Join(root, hashesDir, fmt.Sprintf("%d-%d.json", v.Dev, v.Ino))
		if sum := rememberedHash(recPath, v); sum != "" {
			id.SHA256, id.Version = sum, v
			return id, nil
		}
	}
	hashCount.Add(1)
	sum, err := hashFile(file)
	if err != nil {
		return id, newErr(ErrMissing, err, fmt.Sprintf("weights: reading %s: %v", file, err))
	}
	after, err := StatVersion(file)
	if err != nil || after != v {
		return id, newErr(ErrBadWeights, err, fmt.Sprintf("weights: %s changed while it was being hashed; rerun when nothing writes to it", file))
	}
	id.SHA256, id.Version, id.Hashed = sum, v, true
	if recPath != "" && time.Since(time.Unix(0, max(v.MtimeNS, v.CtimeNS))) >= racyWindow {
		abs, _ := filepath.Abs(file)
		b, _ := json.Marshal(hashRecord{Path: abs, Version: v, SHA256: sum})
		remember(recPath, append(b, '\n')) // best effort: a cache that cannot be written only costs time
	}
	return id, nil
}

// remember writes a hash record atomically through a temporary file of its own, so that two
// runs hashing at once never mix their writes.
func remember(recPath string, b []byte) {
	dir := filepath.Dir(recPath)
	if os.MkdirAll(dir, 0o755) != nil {
		return
	}
	tmp, err := os.CreateTemp(dir, filepath.Base(recPath)+".*.tmp")
	if err != nil {
		return
	}
	_, err = tmp.Write(b)
	if cerr := tmp.Close(); err == nil && cerr == nil && os.Rename(tmp.Name(), recPath) == nil {
		return
	}
	os.Remove(tmp.Name())
}

// rememberedHash is the sha256 remembered at recPath when it was taken from version v of
// the file, else "".
func rememberedHash(recPath string, v FileVersion) string {
	b, err := os.ReadFile(recPath)
	if err != nil {
		return ""
	}
	var r hashRecord
	if json.Unmarshal(b, &r) != nil || r.Version != v || !isSHA256(r.SHA256) {
		return ""
	}
	return r.SHA256
}

// Unchanged says whether file is still the version id was taken from (a check after the
// engine has mapped it: the weights used are the weights hashed).
func (id Identity) Unchanged() error {
	v, err := StatVersion(id.File)
	if err == nil && v == id.Version {
		return nil
	}
	if err == nil {
		err = errors.New("replaced or rewritten")
	}
	return newErr(ErrBadWeights, err, fmt.Sprintf("weights: %s changed while it was being loaded (%v); rerun when nothing writes to it", id.File, err))
}
