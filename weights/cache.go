// cache.go: where downloaded weights live (the cache directory and the names in it), the
// manifest recorded beside them, and Resolve, which turns what a user typed (a path, a hub
// name, a URL) into the path the engine opens.

package weights

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// DefaultModel is the hub repository fetched and resolved when no name is given.
const DefaultModel = "openai/clip-vit-base-patch32"

// DefaultEndpoint is the Hugging Face hub.
const DefaultEndpoint = "https://huggingface.co"

// DefaultFile is the weights file taken from a hub repository.
const DefaultFile = "model.safetensors"

// pinnedRevisions are hub revisions known to hold a model.safetensors for repositories
// whose main branch has none. openai/clip-vit-base-patch32's main has only
// pytorch_model.bin; its safetensors conversion is the refs/pr/66 commit pinned here.
var pinnedRevisions = map[string]string{
	"openai/clip-vit-base-patch32": "c237dc49a33fc61debc9276459120b7eac67e7ef",
}

// DefaultRevision is the revision fetched for repo when none is asked for: a pinned commit
// that holds model.safetensors when one is known, else "main".
func DefaultRevision(repo string) string {
	if r, ok := pinnedRevisions[repo]; ok {
		return r
	}
	return "main"
}

// ManifestFile is the name of the manifest written beside downloaded weights.
const ManifestFile = "manifest.json"

// Manifest records where the weights in a cache directory came from.
type Manifest struct {
	Name     string       `json:"name"`               // what was fetched: a hub repo or a URL
	URL      string       `json:"url"`                // the URL downloaded
	Revision string       `json:"revision,omitempty"` // hub revision asked for
	Commit   string       `json:"commit,omitempty"`   // hub commit it resolved to (X-Repo-Commit)
	File     string       `json:"file"`               // the weights file's name in the directory
	Size     int64        `json:"size"`
	SHA256   string       `json:"sha256"`
	Verified string       `json:"verified"` // what the sha256 was checked against: "hub", "flag" or "none"
	Fetched  time.Time    `json:"fetched"`
	Extras   []FileRecord `json:"extras,omitempty"` // config and tokenizer files fetched beside the weights
	// ExtrasChecked names the extra files the hub was asked for (absent ones included), so
	// that a manifest from before the tokenizer files were fetched is told apart.
	ExtrasChecked []string `json:"extras_checked,omitempty"`
	// Adopted: placed in the cache by hand, not downloaded (adopt.go); URL is where fetch
	// would have downloaded it from, and Fetched when it was adopted.
	Adopted bool `json:"adopted,omitempty"`
}

// FileRecord is one extra file (config.json, open_clip_config.json, vocab.json, merges.txt)
// of a download.
type FileRecord struct {
	File   string `json:"file"`
	URL    string `json:"url"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// ReadManifest reads dir/manifest.json.
func ReadManifest(dir string) (*Manifest, error) {
	b, err := os.ReadFile(filepath.Join(dir, ManifestFile))
	if err != nil {
		return nil, err
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%s: %v", filepath.Join(dir, ManifestFile), err)
	}
	return &m, nil
}

// RecordedSHA256 returns the sha256 recorded for a weights file: from its FILE.sha256
// sidecar (sha256sum format), or from the manifest beside it. "" when none is recorded.
func RecordedSHA256(file string) string {
	if b, err := os.ReadFile(file + ".sha256"); err == nil {
		if f := strings.Fields(string(b)); len(f) > 0 && isSHA256(f[0]) {
			return strings.ToLower(f[0])
		}
	}
	if m, err := ReadManifest(filepath.Dir(file)); err == nil && m.File == filepath.Base(file) && isSHA256(m.SHA256) {
		return m.SHA256
	}
	return ""
}

// CacheDir returns clipd's cache directory: override when set, else $CLIPD_CACHE, else
// $XDG_CACHE_HOME/clipd, else ~/.cache/clipd. Weights live in its weights/ subdirectory.
func CacheDir(override string) (string, error) {
	if override != "" {
		return override, nil
	}
	if d := os.Getenv("CLIPD_CACHE"); d != "" {
		return d, nil
	}
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" && filepath.IsAbs(d) {
		return filepath.Join(d, "clipd"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil || home == "" {
		return "", newErr(ErrInvalidArgument, err, "weights: no cache directory: $HOME is not set; pass --cache-dir or set CLIPD_CACHE")
	}
	return filepath.Join(home, ".cache", "clipd"), nil
}

// ModelDir is the directory that holds the weights cached under name.
func ModelDir(cacheDir, name string) (string, error) {
	root, err := CacheDir(cacheDir)
	if err != nil {
		return "", err
	}
	if err := checkCacheName(name); err != nil {
		return "", err
	}
	return filepath.Join(root, "weights", filepath.FromSlash(name)), nil
}

var (
	repoRe    = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$`)
	segUnsafe = regexp.MustCompile(`[^A-Za-z0-9._-]+`)
)

// IsURL says whether s is given as an http(s) URL rather than a hub name or a path.
func IsURL(s string) bool {
	return strings.HasPrefix(s, "https://") || strings.HasPrefix(s, "http://")
}

// checkRepo validates a hub repository name ("org/name" or a legacy "name").
func checkRepo(repo string) error {
	if len(repo) > 200 || !repoRe.MatchString(repo) || strings.Contains(repo, "..") {
		return newErr(ErrInvalidArgument, nil, fmt.Sprintf("weights: %q is not a Hugging Face repository name (like %s), an https:// URL of a .safetensors file, or an existing path", repo, DefaultModel))
	}
	return nil
}

// checkCacheName refuses names that would escape the cache directory.
func checkCacheName(name string) error {
	if name == "" || strings.HasPrefix(name, "/") || strings.Contains(name, "\\") {
		return newErr(ErrInvalidArgument, nil, fmt.Sprintf("weights: %q is not a valid cache name", name))
	}
	for _, seg := range strings.Split(name, "/") {
		if seg == "" || seg == "." || seg == ".." || segUnsafe.MatchString(seg) {
			return newErr(ErrInvalidArgument, nil, fmt.Sprintf("weights: %q is not a valid cache name (use letters, digits, '.', '_', '-' and '/')", name))
		}
	}
	return nil
}

// checkURL parses a weights URL: https, or plain http to a loopback address only (tests,
// local mirrors).
func checkURL(raw, what string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return nil, newErr(ErrInvalidArgument, err, fmt.Sprintf("weights: %s %q is not a valid URL", what, raw))
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !isLoopback(u.Hostname()) {
			return nil, newErr(ErrInvalidArgument, nil, fmt.Sprintf("weights: %s %q uses plain http; use https (plain http is accepted only for loopback addresses)", what, raw))
		}
	default:
		return nil, newErr(ErrInvalidArgument, nil, fmt.Sprintf("weights: %s %q: scheme must be https", what, raw))
	}
	return u, nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// NameForURL is the cache name of weights downloaded from a URL: the host and the path
// without its extension, with unsafe characters replaced
// (https://example.com/m/ViT-B-32.safetensors -> example.com/m/ViT-B-32).
func NameForURL(raw string) (string, error) {
	u, err := checkURL(raw, "URL")
	if err != nil {
		return "", err
	}
	p := strings.TrimSuffix(u.Path, path.Ext(u.Path))
	segs := []string{segUnsafe.ReplaceAllString(u.Host, "_")}
	for _, s := range strings.Split(p, "/") {
		s = segUnsafe.ReplaceAllString(s, "_")
		if s == "" || s == "." || s == ".." {
			continue
		}
		segs = append(segs, s)
	}
	if len(segs) < 2 {
		segs = append(segs, "weights")
	}
	return strings.Join(segs, "/"), nil
}

// CacheName is the cache name of what a user passed to fetch: a hub repository name stays
// as it is, a URL becomes NameForURL, "" is DefaultModel.
func CacheName(nameOrURL string) (string, error) {
	if nameOrURL == "" {
		return DefaultModel, nil
	}
	if IsURL(nameOrURL) {
		return NameForURL(nameOrURL)
	}
	if err := checkRepo(nameOrURL); err != nil {
		return "", err
	}
	return nameOrURL, nil
}

// WeightsFile returns the .safetensors file that the engine loads for path: path itself
// when it is a file, else the directory's model.safetensors, open_clip_model.safetensors, or
// its only *.safetensors file (the engine's rule).
func WeightsFile(p string) (string, error) {
	st, err := os.Stat(p)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "", newErr(ErrMissing, err, fmt.Sprintf("weights: %s does not exist", p))
		}
		return "", newErr(ErrMissing, err, fmt.Sprintf("weights: cannot open %s: %v", p, err))
	}
	if !st.IsDir() {
		return p, nil
	}
	for _, name := range []string{"model.safetensors", "open_clip_model.safetensors"} {
		f := filepath.Join(p, name)
		if st, err := os.Stat(f); err == nil && st.Mode().IsRegular() {
			return f, nil
		}
	}
	files := globFiles(p, "*.safetensors")
	switch len(files) {
	case 1:
		return files[0], nil
	case 0:
		return "", newErr(ErrMissing, nil, fmt.Sprintf("weights: directory %s holds no .safetensors file (looked for model.safetensors, open_clip_model.safetensors or a single *.safetensors); pass the weights file itself, or run \"clipd weights fetch\"", p))
	}
	return "", newErr(ErrMissing, nil, fmt.Sprintf("weights: directory %s holds %d .safetensors files and no model.safetensors; pass the path of the one to load", p, len(files)))
}

// globFiles lists the regular files in dir that match pattern.
func globFiles(dir, pattern string) []string {
	found, _ := filepath.Glob(filepath.Join(dir, pattern))
	var files []string
	for _, f := range found {
		if st, err := os.Stat(f); err == nil && st.Mode().IsRegular() {
			files = append(files, f)
		}
	}
	return files
}

// Resolve turns what a user passed as weights into a path the engine opens: an existing
// file or directory is returned as it is (a directory must hold a weights file); otherwise
// pathOrName is a hub repository name or a URL looked up in the cache under cacheDir
// (clipd's cache directory, "" for CacheDir("")), and the cached directory is returned.
// "" means DefaultModel. A name not in the cache is an ErrMissing error that says to run
// `clipd weights fetch` (or to resume one), or how to do without the network. Weights placed
// in the cached folder by hand are adopted here (adopt.go).
func Resolve(pathOrName string, cacheDir string) (string, error) {
	if pathOrName != "" && !IsURL(pathOrName) {
		if _, err := os.Stat(pathOrName); err == nil {
			if _, err := WeightsFile(pathOrName); err != nil {
				return "", err
			}
			return pathOrName, nil
		} else if !errors.Is(err, os.ErrNotExist) {
			return "", newErr(ErrMissing, err, fmt.Sprintf("weights: cannot open %s: %v", pathOrName, err))
		}
		if looksLikePath(pathOrName) {
			return "", newErr(ErrMissing, nil, fmt.Sprintf("weights: %s does not exist", pathOrName))
		}
	}
	name, err := CacheName(pathOrName)
	if err != nil {
		return "", err
	}
	dir, err := ModelDir(cacheDir, name)
	if err != nil {
		return "", err
	}
	fetchCmd := "clipd weights fetch"
	if pathOrName != "" {
		fetchCmd += " " + pathOrName
	}
	file := DefaultFile
	if src, err := (&FetchOptions{Name: pathOrName}).source(); err == nil {
		file = src.file
	}
	// Each state of the folder gets one line that says what to do.
	notCached := displayName(pathOrName) + " is not in the cache"
	if pathOrName != "" {
		notCached = pathOrName + " is not a file or directory and is not in the cache"
	}
	howTo := fmt.Sprintf("run \"%s\" to download it, pass --weights PATH, or place %s and its config.json in %s by hand", fetchCmd, file, dir)
	if _, err := os.Stat(dir); err != nil {
		return "", newErr(ErrMissing, err, fmt.Sprintf("weights: %s: %s", notCached, howTo))
	}
	if _, err := WeightsFile(dir); err != nil {
		switch {
		case hasResumablePart(dir):
			return "", newErr(ErrMissing, err, fmt.Sprintf("weights: %s is an interrupted download in %s: run \"%s\" to resume it, or pass --weights PATH", displayName(pathOrName), dir, fetchCmd))
		case len(globFiles(dir, "*.safetensors")) > 1:
			return "", err // several candidates: WeightsFile's message says to pick one
		}
		return "", newErr(ErrMissing, err, fmt.Sprintf("weights: %s (its folder holds no weights file): %s", notCached, howTo))
	}
	if err := adopt(dir, pathOrName); err != nil {
		return "", err
	}
	return dir, nil
}

// hasResumablePart says whether dir holds a partial download that fetch resumes: a
// non-empty NAME.part with the NAME.part.meta that says what it is part of.
func hasResumablePart(dir string) bool {
	for _, p := range globFiles(dir, "*.part") {
		if st, err := os.Stat(p); err == nil && st.Size() > 0 {
			if _, err := os.Stat(p + ".meta"); err == nil {
				return true
			}
		}
	}
	return false
}

func displayName(s string) string {
	if s == "" {
		return DefaultModel
	}
	return s
}

// looksLikePath says whether s can only be meant as a local path (not a hub name).
func looksLikePath(s string) bool {
	return strings.HasPrefix(s, "/") || strings.HasPrefix(s, "./") || strings.HasPrefix(s, "../") ||
		strings.HasPrefix(s, "~") || strings.HasSuffix(s, ".safetensors") || strings.Count(s, "/") > 1
}

func isSHA256(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}
