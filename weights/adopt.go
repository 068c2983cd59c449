// adopt.go: weights placed in the cache by hand (copied from another machine onto one with
// no network) become cached weights like downloaded ones: checked, hashed, and recorded in
// the manifest a download would have written.

package weights

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// Without a manifest, fetch cannot tell hand-placed weights from a stranger's file (it
// would download over them, or fail offline) and nothing records their sha256. Adoption
// happens where such weights are met first, both under the folder's lock so it never races
// a download into the same folder:
//   - Resolve of a cached name (clipd embed without --weights, clipd weights inspect, bench):
//     the commands a user without a network runs;
//   - Fetch, before it touches the network, so that an offline fetch finds them cached
//     (and an online one checks them against the hub's sha256, downloading on a mismatch).
//
// The hub's sha256 of a file is known only from the hub (no constant is kept for the pinned
// revision of DefaultModel), so the manifest records the computed one with Verified "none"
// and Adopted set; a later online fetch compares it with the hub's.

// errNothingToAdopt: the folder has a manifest already, or no weights file.
var errNothingToAdopt = errors.New("nothing to adopt")

// adopt adopts the weights in the cache folder dir of nameOrURL when they have no manifest.
// Only weights that are not a CLIP checkpoint are an error (ErrBadWeights); a folder that
// another process holds locked, or that cannot be written, is left as it is.
func adopt(dir, nameOrURL string) error {
	src, err := (&FetchOptions{Name: nameOrURL}).source()
	if err != nil {
		return nil // not a name fetch could have used; Resolve returns the folder as it is
	}
	if _, err := os.Stat(filepath.Join(dir, ManifestFile)); err == nil {
		return nil // the usual case, without taking the lock
	}
	unlock, err := lockDir(dir)
	if err != nil {
		return nil
	}
	defer unlock()
	if _, err := adoptLocked(dir, src); err != nil && errors.Is(err, ErrBadWeights) {
		return err
	}
	return nil
}

// adoptLocked checks, hashes and records the weights file in dir as the download of src
// would have; the caller holds dir's lock. It returns errNothingToAdopt when dir has a
// manifest or no weights file.
func adoptLocked(dir string, src *source) (*Manifest, error) {
	if _, err := os.Stat(filepath.Join(dir, ManifestFile)); !errors.Is(err, os.ErrNotExist) {
		return nil, errNothingToAdopt
	}
	file, err := WeightsFile(dir)
	if err != nil {
		return nil, errNothingToAdopt
	}
	h, err := ReadHeader(file)
	if err != nil {
		if !errors.Is(err, ErrBadWeights) {
			return nil, err
		}
		return nil, newErr(ErrBadWeights, err, fmt.Sprintf("weights: %s was placed in the cache by hand but is not a safetensors file (%v); replace it with the model's %s, or pass --weights PATH", file, errors.Unwrap(err), src.file))
	}
	if naming, _ := h.Naming(); naming == NamingUnknown {
		return nil, newErr(ErrBadWeights, nil, fmt.Sprintf("weights: %s was placed in the cache by hand but is not a CLIP checkpoint (%s); replace it with the model's %s, or pass --weights PATH", file, naming.Describe(), src.file))
	}
	base := filepath.Base(file)
	url := src.url
	if src.hub && base != src.file {
		url = src.resolveURL(base)
	}
	var extras []FileRecord
	for _, name := range extraFiles {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		want := "readable"
		if err == nil {
			want = checkExtra(name, b)
		}
		if want != "" {
			return nil, newErr(ErrBadWeights, err, fmt.Sprintf("weights: %s was placed in the cache by hand but is not %s; fix or remove it", filepath.Join(dir, name), want))
		}
		s := sha256.Sum256(b)
		rec := FileRecord{File: name, Size: int64(len(b)), SHA256: hex.EncodeToString(s[:])}
		if src.hub {
			rec.URL = src.resolveURL(name)
		}
		extras = append(extras, rec)
	}
	sum, err := hashFile(file)
	if err != nil {
		return nil, newErr(ErrMissing, err, fmt.Sprintf("weights: reading %s: %v", file, err))
	}
	m := &Manifest{
		Name: src.url, URL: url, Revision: src.revision, File: base, Size: h.FileSize, SHA256: sum,
		Verified: "none", Fetched: time.Now().UTC().Truncate(time.Second), Extras: extras, Adopted: true,
	}
	if src.hub {
		m.Name = src.repo
	}
	if err := writeFileAtomic(file+".sha256", []byte(fmt.Sprintf("%s  %s\n", sum, base))); err != nil {
		return nil, err
	}
	mb, _ := json.MarshalIndent(m, "", "  ")
	if err := writeFileAtomic(filepath.Join(dir, ManifestFile), append(mb, '\n')); err != nil {
		return nil, err
	}
	return m, syncDir(dir)
}
