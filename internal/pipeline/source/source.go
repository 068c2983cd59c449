// source.go: the Source type — Open/New resolve a spec into a byte stream, read the header
// synchronously (so a bad header is an error from Open), then one goroutine turns rows into
// Records on a bounded channel.

package source

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/clipd/clipd/internal/objstore"
	"github.com/clipd/clipd/internal/pipeline/budget"
	"github.com/clipd/clipd/internal/pipeline/item"
)

// Format is how rows are laid out. See Open for how FormatAuto decides.
type Format string

// The formats.
const (
	FormatAuto Format = ""     // decided from the content and the name, see Open
	FormatText Format = "text" // one URL a line; blank lines and lines starting with # skipped
	FormatCSV  Format = "csv"  // RFC 4180 with a header row
	FormatTSV  Format = "tsv"  // tab-separated with a header row; fields literal (no quoting)
)

// URLKind picks which URL an Open Images row yields.
type URLKind string

// The Open Images URL kinds.
const (
	OriginalURL  URLKind = "original"  // OriginalURL (Flickr), with OriginalMD5/OriginalSize carried; the default
	ThumbnailURL URLKind = "thumbnail" // Thumbnail300KURL; rows without one become failures "no thumbnail URL"
	MirrorURL    URLKind = "mirror"    // the CVDF mirror, {MirrorBaseURL}/{split}/{ImageID}.jpg (what the notebook fetched)
)

// Defaults; the base URLs can also be set through the environment variables named here.
const (
	DefaultOpenImagesBaseURL = "https://storage.googleapis.com/openimages"    // env CLIPD_OPENIMAGES_BASE_URL
	DefaultMirrorBaseURL     = "https://open-images-dataset.s3.amazonaws.com" // env CLIPD_OPENIMAGES_MIRROR_URL
	DefaultMaxURLBytes       = 8192
	DefaultReadIdleTimeout   = 60 * time.Second
	DefaultBuffer            = 1024
)

// Options tune a Source. The zero value reads everything with the defaults.
type Options struct {
	Format    Format // FormatAuto: see Open
	URLColumn string // CSV/TSV: the URL column's name (case-insensitive); "" = url, OriginalURL, Thumbnail300KURL in that order
	Limit     int64  // stop after this many items of the shard; failures met on the way are sent but not counted; 0 = no limit
	// Shard keeps only this shard's rows (the zero value keeps all). A row's shard is decided by
	// its URL, or, for a malformed row without one, by the row's text.
	Shard Shard
	// Columns are the input columns to carry to the output with each row (Item.Columns), by
	// name: CSV/TSV/parquet header names (case-insensitive), a tar shard's "caption" and "key".
	Columns []string
	// TextColumn names the column whose value becomes each row's Item.Text (a caption to
	// embed): a CSV/TSV/parquet header name (case-insensitive; a header without it is an
	// error from Open); for tar shards "caption" (the json's caption, else the .txt member)
	// or any other field of the sample's .json. A row without a value gets "".
	TextColumn string

	OpenImagesURL     URLKind // which URL openimages: rows yield; "" = OriginalURL
	OpenImagesBaseURL string  // where the metadata CSVs live; "" = $CLIPD_OPENIMAGES_BASE_URL or DefaultOpenImagesBaseURL
	MirrorBaseURL     string  // the image mirror for MirrorURL; "" = $CLIPD_OPENIMAGES_MIRROR_URL or DefaultMirrorBaseURL
	CacheDir          string  // where metadata is cached; "" = weights.CacheDir("") ($CLIPD_CACHE, $XDG_CACHE_HOME/clipd or ~/.cache/clipd)
	// Progress, when set, is called while a metadata file downloads (total -1 when unknown).
	Progress func(done, total int64)

	MaxURLBytes     int           // longer URLs are failures; 0 = DefaultMaxURLBytes
	ReadIdleTimeout time.Duration // an http(s) or s3:// read that waits this long for a byte fails; 0 = DefaultReadIdleTimeout
	HTTPClient      *http.Client  // for http(s) inputs and metadata downloads; nil = one with bounded connect/header timeouts
	// Objects reads s3:// inputs (an *objstore.Client with the run's credentials); nil: they
	// are refused.
	Objects ObjectStore
	Buffer  int // capacity of the Records channel; 0 = DefaultBuffer
	// Budget, when set, bounds the bytes of the image members a tar input has read and not
	// yet handed over: a member takes its size before it is read (waiting while that does
	// not fit; one larger than the whole budget fails its sample "too large for --memory"),
	// and the Record's receiver gives it back with Record.Release. nil: each member is only
	// bounded by MaxTarMemberBytes.
	Budget *budget.Budget
}

// Record is one row's outcome: an item to fetch, or (Failure != nil) a malformed row. Failure.Item
// carries the row's Seq, Line and whatever URL and ImageID could be read. Items and failures
// share one Seq sequence, 0, 1, 2, ... in input order after sharding, so every position ends
// as exactly one of the two. The same input, shard and options give the same Seqs.
type Record struct {
	Item    item.Item
	Failure *item.Failure
	// Body holds the row's encoded image when the input carries the bytes itself (a tar
	// shard's member); nil when the image is to be fetched or read from Item.URL.
	Body []byte

	held   int64 // bytes of Options.Budget that Body holds
	budget *budget.Budget
}

// Held is the bytes of Options.Budget that the Record's Body holds until Release.
func (r Record) Held() int64 { return r.held }

// Release gives the bytes Body holds back to Options.Budget; call it once, when Body is no
// longer needed (or the Record is dropped). A no-op for Records without a held Body.
func (r Record) Release() { r.budget.Release(r.held) }

// Stats counts what a Source has read so far; safe to call at any time.
type Stats struct {
	Rows        int64 // data rows read, before sharding (headers, blank lines and comments not counted)
	Items       int64 // Records sent with an Item
	Failures    int64 // Records sent with a Failure
	OtherShards int64 // rows skipped because they belong to another shard
	Bytes       int64 // raw input bytes read so far (compressed ones for a gzipped input)
}

// Info describes what Open found.
type Info struct {
	Spec      string
	Format    Format   // the format used (never FormatAuto)
	Gzip      bool     // the input was gzip-compressed
	Columns   []string // the header row; nil for FormatText
	URLColumn string   // the column URLs come from ("" for text)
	IDColumn  string   // the column ImageIDs come from; "" when the input has none
	Cached    string   // openimages: the local copy of the metadata file

	// Fingerprint identifies the input's content: "sha256:<hex> size:<n>" of a local file or
	// of Open Images' cached metadata, "files:<n> sha256:<hex>" of a folder's listing, an
	// http(s) server's validators ("etag:... last-modified:... size:<n>"); "" for standard
	// input or a server that sends no validator (the content can then not be checked).
	Fingerprint string
	TotalBytes  int64 // the raw input's size in bytes; -1 when unknown
	TotalRows   int64 // the input's data rows when known exactly (a folder's files), else 0
}

// Source streams Records from one input. Read Records until it is closed, then check Err.
type Source struct {
	info   Info
	out    chan Record
	done   chan struct{}
	cancel context.CancelFunc
	closer io.Closer
	err    error // set before done is closed
	closed atomic.Bool
	once   sync.Once

	rows, items, failures, others atomic.Int64
	counted                       *countingReader
}

// Open starts streaming the input named by spec:
//   - "openimages:<split>", split one of train (the full ~9M-image train set, v6
//     oidv6-train-images-with-labels-with-rotation.csv), train-boxable, validation (or val), test, or
//     all (image_ids_and_rotation.csv); the metadata CSV is downloaded once into the cache;
//   - an http:// or https:// URL, streamed;
//   - an s3://bucket/key object, through Options.Objects (see s3.go): a list streamed, a
//     parquet list copied to a temporary file first, tar shards as below (a key ending in
//     .tar, .tar.gz or .tgz, or a pattern of them whose globs are matched against a listing);
//   - "-" for standard input (a read that blocks is abandoned when ctx ends or on Close;
//     so is a FIFO's);
//   - a directory: its image files (ImageExtensions, any case), recursively, in lexical
//     order; each row's URL is the file's absolute path;
//   - a pattern of image files ('photos/*.jpg', 'img_{000..099}.png'): braces expanded, each
//     glob sorted, as a folder's files;
//   - a parquet file (recognised by its magic bytes "PAR1"; see parquet.go): its rows, read a
//     row group at a time;
//   - anything else is a local path of a list.
//
// Gzip is recognised by its magic bytes whatever the name. With FormatAuto the format is,
// looking at the first non-blank line of the (decompressed) content and then at the name
// (without .gz, and for a URL the path without the query):
//  1. a first line starting with "#", "http://" or "https://" means text (a headerless list);
//  2. else the extension: .csv is CSV; .tsv and .tab are TSV; .txt, .lst, .list, .urls are text;
//  3. else the first line: a tab means TSV, a comma CSV, otherwise text.
//
// CSV is RFC 4180 (quoted fields, "" for a quote, quoted newlines up to 32 lines); TSV fields
// are literal. A first line "TsvHttpData-1.0" is Google's URL-list format (URL, size, base64
// MD5 per line). The first non-blank CSV/TSV line is the header; the URL column is
// Options.URLColumn or the first of url, OriginalURL, Thumbnail300KURL (any case), the ID
// column the first of ImageID, id, image_id. OriginalMD5 and OriginalSize become Item.MD5 and
// Item.Size only when the URLs are OriginalURLs. A header without the URL column is an error
// from Open; a malformed row is a Failure whose Reason is "line N: why" (bad quoting, missing
// column, empty URL, invalid UTF-8, a scheme other than http(s), no host, a space or control
// character, a URL over MaxURLBytes, a line over 256 KiB), and reading goes on.
// ctx bounds the whole stream: cancelling it ends Records and Err returns ctx's error.
//
// Tar shards (webdataset, as img2dataset writes them; checked first, see tar.go) are: an
// existing file named *.tar, *.tar.gz or *.tgz; a spec that is no existing path and holds
// braces or glob characters (shards/{00000..00099}.tar, shards/{a,b}.tar, 'shards/*.tar'),
// expanded here in brace order, each glob sorted; a folder holding tar shards and no image
// file (its shards, recursively, in lexical order); a folder with any image is a folder of
// images as above; a text list whose first entry is a shard's name (then every entry must be
// one; relative to the list's folder). One Record per sample, its image in Record.Body.
func Open(ctx context.Context, spec string, opt Options) (*Source, error) {
	if objstore.IsURL(spec) {
		return openS3(ctx, spec, opt)
	}
	if s, ok, err := openTar(ctx, spec, opt); ok {
		return s, err
	}
	if err := opt.validate(); err != nil {
		return nil, err
	}
	lower := strings.ToLower(spec)
	if opt.OpenImagesURL != "" && opt.OpenImagesURL != OriginalURL && !strings.HasPrefix(lower, "openimages:") {
		return nil, fmt.Errorf("source %s: the Open Images URL kind %q applies only to openimages:<split> inputs", spec, opt.OpenImagesURL)
	}
	if s, ok, err := openParquet(ctx, spec, opt); ok { // a local file starting with "PAR1"
		return s, err
	}
	if isImagePattern(spec) {
		if _, err := os.Stat(spec); err != nil { // an existing file with such a name is a list
			return openImagePattern(ctx, spec, opt)
		}
	}
	switch {
	case strings.HasPrefix(lower, "openimages:"):
		return openOpenImages(ctx, spec, opt)
	case strings.HasPrefix(lower, "http://") || strings.HasPrefix(lower, "https://"):
		body, header, length, err := getBody(ctx, spec, opt)
		if err != nil {
			return nil, err
		}
		return start(ctx, body, spec, urlName(spec), opt, rowConfig{fingerprint: httpFingerprint(header, length), totalBytes: length})
	case spec == "-":
		return start(ctx, io.NopCloser(os.Stdin), "stdin", "", opt, rowConfig{totalBytes: -1, stdinPaths: true, stream: true})
	case strings.Contains(spec, "://"):
		return nil, fmt.Errorf("source %s: unsupported scheme; give a local path, an http(s) or s3:// URL, - for stdin, or openimages:<split>", spec)
	}
	if st, err := os.Stat(spec); err == nil && isStream(st) {
		// A FIFO (or device): read as it comes, like standard input; its content cannot be
		// hashed ahead (that would consume it), so it has no fingerprint.
		abs, err := filepath.Abs(spec)
		if err != nil {
			return nil, fmt.Errorf("source: %w", err)
		}
		f, err := openStream(ctx, spec)
		if err != nil {
			if ctx.Err() != nil {
				return nil, err
			}
			return nil, fmt.Errorf("source: %w; check the path", err)
		}
		return start(ctx, f, spec, spec, opt, rowConfig{totalBytes: -1, baseDir: filepath.Dir(abs), stream: true})
	}
	f, err := os.Open(spec)
	if err != nil {
		return nil, fmt.Errorf("source: %w; check the path", err)
	}
	if st, err := f.Stat(); err == nil && st.IsDir() {
		f.Close()
		return openFolder(ctx, spec, opt)
	}
	fingerprint, size, err := fileFingerprint(spec)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("source: %w", err)
	}
	abs, err := filepath.Abs(spec)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("source: %w", err)
	}
	return start(ctx, f, spec, spec, opt, rowConfig{fingerprint: fingerprint, totalBytes: size, baseDir: filepath.Dir(abs)})
}

// New streams Records from r, as Open does for a file called name (name only serves the
// format rule and messages). If r is an io.Closer, the Source closes it when done. r is read
// in a goroutine of its own: when ctx ends or Close is called, a Read blocked on r (standard
// input that nobody closes) is abandoned, left to return when r sends or ends.
func New(ctx context.Context, r io.Reader, name string, opt Options) (*Source, error) {
	if err := opt.validate(); err != nil {
		return nil, err
	}
	rc, ok := r.(io.ReadCloser)
	if !ok {
		rc = io.NopCloser(r)
	}
	return start(ctx, rc, name, name, opt, rowConfig{totalBytes: -1, stream: true})
}

// Records is the stream; it is closed at the end of the input, at the limit, on a read
// error, or after Close.
func (s *Source) Records() <-chan Record { return s.out }

// Err is the error that ended the stream early (a read error, or ctx's error), or nil. Call it
// after Records is closed; before that it returns nil.
func (s *Source) Err() error {
	select {
	case <-s.done:
		return s.err
	default:
		return nil
	}
}

// Ended reports whether the stream has ended (the input is read to its end, or failed).
func (s *Source) Ended() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// Stats returns the counts so far.
func (s *Source) Stats() Stats {
	return Stats{Rows: s.rows.Load(), Items: s.items.Load(), Failures: s.failures.Load(), OtherShards: s.others.Load(), Bytes: s.counted.n.Load()}
}

// Info describes the input.
func (s *Source) Info() Info { return s.info }

// Close stops the stream, releases the input and waits for the reading goroutine. Records is
// closed afterwards (drain it or not). Safe to call more than once.
func (s *Source) Close() error {
	s.once.Do(func() {
		s.closed.Store(true)
		s.cancel()
		s.closer.Close() // unblocks a pending network read
		<-s.done
	})
	return nil
}

func (o *Options) validate() error {
	switch o.Format {
	case FormatAuto, FormatText, FormatCSV, FormatTSV:
	default:
		return fmt.Errorf("source: unknown format %q; want text, csv or tsv (or empty to detect)", o.Format)
	}
	switch o.OpenImagesURL {
	case "", OriginalURL, ThumbnailURL, MirrorURL:
	default:
		return fmt.Errorf("source: unknown Open Images URL kind %q; want original, thumbnail or mirror", o.OpenImagesURL)
	}
	if o.Limit < 0 {
		return fmt.Errorf("source: limit %d is negative; use 0 for no limit", o.Limit)
	}
	if o.MaxURLBytes < 0 || o.Buffer < 0 || o.ReadIdleTimeout < 0 {
		return errors.New("source: MaxURLBytes, Buffer and ReadIdleTimeout must not be negative")
	}
	return o.Shard.Validate()
}

// onceCloser closes the input once, whichever of Close and the reading goroutine is first.
type onceCloser struct {
	once sync.Once
	c    io.Closer
}

func (o *onceCloser) Close() error {
	o.once.Do(func() { o.c.Close() })
	return nil
}

// urlName is the part of a URL the format rule looks at: the path, without query or fragment.
func urlName(u string) string {
	if i := strings.IndexAny(u, "?#"); i >= 0 {
		u = u[:i]
	}
	return u
}
