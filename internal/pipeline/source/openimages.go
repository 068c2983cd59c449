// openimages.go: openimages:<split> inputs — which official metadata CSV each split is, the
// local cache it is downloaded into once (atomically), and the URL each row yields.

package source

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"github.com/clipd/clipd/internal/echo"
	"github.com/clipd/clipd/weights"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// openImagesSplit is one openimages:<split> input.
type openImagesSplit struct {
	file   string // relative to the metadata base URL (and to the cache's openimages/ dir)
	mirror string // the split's directory on the CVDF mirror; "" when the mirror lacks it
}

// The Open Images V7 image lists (V7 reuses the 2018_04 files; the full train list is v6's).
var openImagesSplits = map[string]openImagesSplit{
	"train":         {file: "v6/oidv6-train-images-with-labels-with-rotation.csv"},
	"train-boxable": {file: "2018_04/train/train-images-boxable-with-rotation.csv", mirror: "train"},
	"validation":    {file: "2018_04/validation/validation-images-with-rotation.csv", mirror: "validation"},
	"test":          {file: "2018_04/test/test-images-with-rotation.csv", mirror: "test"},
	"all":           {file: "2018_04/image_ids_and_rotation.csv"},
}

// openImagesHeader is how every one of those files starts.
const openImagesHeader = "ImageID,Subset,OriginalURL,OriginalLandingURL,License,AuthorProfileURL,Author,Title,OriginalSize,OriginalMD5,Thumbnail300KURL,Rotation"

// OpenImagesSplits lists the accepted <split> names.
func OpenImagesSplits() []string {
	names := make([]string, 0, len(openImagesSplits))
	for n := range openImagesSplits {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func openOpenImages(ctx context.Context, spec string, opt Options) (*Source, error) {
	name := strings.ToLower(strings.TrimSpace(spec[len("openimages:"):]))
	if name == "val" {
		name = "validation"
	}
	split, ok := openImagesSplits[name]
	if !ok {
		return nil, fmt.Errorf("source %s: unknown Open Images split %q; want one of %s", spec, name, strings.Join(OpenImagesSplits(), ", "))
	}
	if opt.URLColumn != "" {
		return nil, fmt.Errorf("source %s: the URL column is fixed for Open Images; choose original, thumbnail or mirror URLs instead", spec)
	}
	cfg := rowConfig{format: FormatCSV, urlColumn: "OriginalURL"}
	switch opt.OpenImagesURL {
	case ThumbnailURL:
		cfg.urlColumn = "Thumbnail300KURL"
	case MirrorURL:
		if split.mirror == "" {
			return nil, fmt.Errorf("source %s: the CVDF mirror holds only train-boxable, validation and test images; use openimages:train-boxable, or original or thumbnail URLs", spec)
		}
		base := firstNonEmpty(opt.MirrorBaseURL, os.Getenv("CLIPD_OPENIMAGES_MIRROR_URL"), DefaultMirrorBaseURL)
		cfg.mirrorPrefix = strings.TrimRight(base, "/") + "/" + split.mirror + "/"
		cfg.urlColumn = "ImageID"
	}
	local, err := cachedMetadata(ctx, split.file, opt)
	if err != nil {
		return nil, fmt.Errorf("source %s: %w", spec, err)
	}
	f, err := os.Open(local)
	if err != nil {
		return nil, fmt.Errorf("source %s: %w", spec, err)
	}
	cfg.cached = local
	if cfg.fingerprint, cfg.totalBytes, err = fileFingerprint(local); err != nil {
		f.Close()
		return nil, fmt.Errorf("source %s: %w", spec, err)
	}
	return start(ctx, f, spec, local, opt, cfg)
}

// cachedMetadata returns the local copy of the metadata file rel, downloading it first when
// the cache lacks it. The download goes to a temporary file in the same directory, is checked
// (length, header) and renamed into place, so the cache never holds a partial file.
func cachedMetadata(ctx context.Context, rel string, opt Options) (string, error) {
	dir, err := weights.CacheDir(opt.CacheDir) // one cache, one rule for where it is
	if err != nil {
		return "", err
	}
	local := filepath.Join(dir, "openimages", filepath.FromSlash(rel))
	if st, err := os.Stat(local); err == nil && st.Mode().IsRegular() && st.Size() > 0 {
		return local, nil
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	base := firstNonEmpty(opt.OpenImagesBaseURL, os.Getenv("CLIPD_OPENIMAGES_BASE_URL"), DefaultOpenImagesBaseURL)
	u := strings.TrimRight(base, "/") + "/" + rel
	if err := download(ctx, u, local, opt); err != nil {
		return "", err
	}
	return local, nil
}

func download(ctx context.Context, u, local string, opt Options) (err error) {
	if err := os.MkdirAll(filepath.Dir(local), 0o755); err != nil {
		return fmt.Errorf("cannot create the cache directory: %w; pass --cache-dir or set CLIPD_CACHE", err)
	}
	body, _, total, err := getBody(ctx, u, opt)
	if err != nil {
		return err
	}
	defer body.Close()
	tmp, err := os.CreateTemp(filepath.Dir(local), path.Base(local)+".*.tmp")
	if err != nil {
		return fmt.Errorf("cannot write to the cache: %w", err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	var r io.Reader = body
	if opt.Progress != nil {
		r = &progressReader{r: body, total: total, fn: opt.Progress}
	}
	bw := bufio.NewWriterSize(tmp, 1<<20)
	n, err := io.Copy(bw, r)
	if err != nil {
		return fmt.Errorf("downloading %s: %w (nothing was cached; run again to retry)", u, err)
	}
	if total >= 0 && n != total {
		return fmt.Errorf("downloading %s: got %d of %d bytes (nothing was cached; run again to retry)", u, n, total)
	}
	if err = bw.Flush(); err != nil {
		return fmt.Errorf("writing the cache: %w", err)
	}
	if err = checkHeader(tmp); err != nil {
		return fmt.Errorf("downloading %s: %w; nothing was cached", u, err)
	}
	if err = tmp.Sync(); err != nil {
		return fmt.Errorf("writing the cache: %w", err)
	}
	if err = tmp.Close(); err != nil {
		return fmt.Errorf("writing the cache: %w", err)
	}
	if err = os.Rename(tmp.Name(), local); err != nil {
		return fmt.Errorf("writing the cache: %w", err)
	}
	return nil
}

// checkHeader makes sure what was downloaded is an Open Images image list, not, say, an
// error page served with 200.
func checkHeader(f *os.File) error {
	buf := make([]byte, len(openImagesHeader)+3)
	n, _ := f.ReadAt(buf, 0)
	got := strings.TrimPrefix(string(buf[:n]), "\xef\xbb\xbf")
	if !strings.HasPrefix(got, "ImageID,") {
		first, _, _ := strings.Cut(got, "\n")
		return fmt.Errorf("the file does not start with an Open Images header (%q...); got %s", openImagesHeader[:24], echo.Quote(first))
	}
	return nil
}

type progressReader struct {
	r     io.Reader
	done  int64
	total int64
	fn    func(done, total int64)
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	if n > 0 {
		p.done += int64(n)
		p.fn(p.done, p.total)
	}
	return n, err
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}
