// config.go: what defines a run (Config), its defaults and its checks.

package embed

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/clipd/clipd/cgo/engine"
	"github.com/clipd/clipd/internal/objstore"
	"github.com/clipd/clipd/internal/pipeline/decode"
	"github.com/clipd/clipd/internal/pipeline/fetch"
	"github.com/clipd/clipd/internal/pipeline/outfile"
	"github.com/clipd/clipd/internal/pipeline/plan"
	"github.com/clipd/clipd/internal/pipeline/source"
)

// Shard selects a deterministic 1/Count of the input (by a hash of each row's URL); the zero
// value is the whole input.
type Shard = source.Shard

// ParseShard reads "i/n" (0 <= i < n).
func ParseShard(s string) (Shard, error) { return source.ParseShard(s) }

// URLKind is which URL an Open Images row yields.
type URLKind = source.URLKind

// The URL kinds of openimages:SPLIT inputs.
const (
	OriginalURL  = source.OriginalURL  // the original (Flickr), with its MD5 and size checked; the default
	ThumbnailURL = source.ThumbnailURL // the 300K thumbnail
	MirrorURL    = source.MirrorURL    // the CVDF mirror (what Open Images' downloader.py fetches)
)

// Preprocess is how JPEGs are decoded before CLIP's preprocessing.
type Preprocess = decode.Mode

const (
	// Exact decodes at full size: the same pixels as Pillow, the same embeddings as the
	// reference pipeline.
	Exact = decode.Exact
	// Fast decodes JPEGs DCT-scaled to the smallest size that still covers the model's input:
	// several times faster, not bit-exact.
	Fast = decode.Fast
)

// ParsePreprocess reads "exact" or "fast".
func ParsePreprocess(s string) (Preprocess, error) { return decode.ParseMode(s) }

// Decode is where JPEGs are decoded.
type Decode string

const (
	// DecodeAuto decodes JPEGs on the GPU when the CUDA backend runs and has nvJPEG (with
	// exact preprocessing), else on the CPU.
	DecodeAuto Decode = "auto"
	// DecodeCPU decodes every image on the CPU decode workers (libjpeg-turbo, Pillow-exact).
	DecodeCPU Decode = "cpu"
	// DecodeGPU hands JPEG bytes to the engine, which decodes them on the device (nvJPEG) in
	// the same call as the forward; other formats, and JPEGs the engine cannot decode, are
	// decoded on the CPU. It needs the CUDA backend, built with nvJPEG.
	DecodeGPU Decode = "gpu"
)

// ParseDecode reads "auto", "cpu" or "gpu".
func ParseDecode(s string) (Decode, error) {
	switch d := Decode(strings.ToLower(strings.TrimSpace(s))); d {
	case "", DecodeAuto:
		return DecodeAuto, nil
	case DecodeCPU, DecodeGPU:
		return d, nil
	}
	return "", fmt.Errorf("unknown decode %q (want auto, cpu or gpu)", s)
}

// Defaults of Config's zero fields.
const (
	DefaultTimeout         = fetch.DefaultTimeout
	DefaultRetries         = fetch.DefaultRetries
	DefaultProgressEvery   = 250 * time.Millisecond
	DefaultWarnFailureRate = 0.5
)

// Config is one run. The zero value of a field means its default; Input, Output and (unless
// the default model is in the cache) Weights are needed.
type Config struct {
	// Input is a URL list (text, CSV or TSV, optionally gzipped; a path, an http(s) URL or an
	// s3://bucket/key object), "-" for Stdin, "openimages:SPLIT" (train, train-boxable,
	// validation, test, all), a folder of images (read recursively, in lexical order), or tar
	// shards (files, or s3:// objects and patterns of them); see source.Open. s3:// inputs and
	// rows are read with S3's settings.
	Input string
	// Stdin is read when Input is "-"; nil means os.Stdin.
	Stdin io.Reader
	// URLColumn is the CSV/TSV column holding the URLs; "" = url, OriginalURL or
	// Thumbnail300KURL.
	URLColumn string
	// URLKind picks the URL of openimages: rows; "" = OriginalURL.
	URLKind URLKind
	// SaveColumns are input columns stored with each row, one string dataset each (named in
	// lower case): CSV/TSV/parquet columns by header name, a tar shard's "caption" and "key".
	SaveColumns []string
	// TextColumn, when set, also embeds each row's text with the model's text tower into
	// text_embeddings (row i: the embedding of row i's text, the embeddings' dtype, normalized
	// with Normalize): a CSV/TSV/parquet column by header name; for tar shards "caption" (the
	// json's caption, else the .txt member) or another field of the sample's .json. A row
	// without a text gets the embedding of "" (as clip-retrieval's --enable_text does for an
	// empty caption). It needs weights with a text tower and vocab.json + merges.txt beside them.
	TextColumn string
	// Limit stops after this many rows of the shard; 0 = all.
	Limit int64
	// Shard is the part of the input this run embeds.
	Shard Shard

	// Weights is a .safetensors file, a folder holding model.safetensors (+ config.json), or
	// a name in the cache (see the weights package); "" = weights.DefaultModel in the cache.
	Weights  string
	CacheDir string // the weights and metadata cache; "" = $CLIPD_CACHE or ~/.cache/clipd

	// Backend, Device and Threads choose where the model runs (see package engine).
	Backend   engine.Backend
	Device    int
	Threads   int              // CPU backend threads; 0 = all cores
	Precision engine.Precision // AUTO: fp16 on CUDA, fp32 on the CPU
	// Devices runs one engine per CUDA device listed (instead of Device) behind one
	// fetch/read/decode pipeline; each batch goes to whichever engine is free. Output order
	// and resume are as with one engine.
	Devices []int
	// Decode is where JPEGs are decoded; "" = DecodeCPU, exact, until the embedding cost of
	// nvJPEG decoding is measured on a GPU (issue 14: the default stays exact unless that
	// costs less than 1e-4 in min cosine).
	Decode Decode

	// Output is the output folder: chunk files while running, Images_Embedded.h5 at the end.
	// With a Shard of n > 1 the run writes to OUTPUT/shard-<i>-of-<n>/ (see OutputDir), so
	// the tasks of an array job can share one Output; `clipd merge OUTPUT` joins them.
	// An s3://BUCKET/PREFIX Output is a folder in a bucket with the same names: the run
	// writes a local staging folder (StagingDir) and copies it to the bucket as it goes
	// (see s3out.go); a rerun on any machine resumes from what the bucket holds.
	Output string
	// Staging is the local folder an s3:// Output's run writes before uploading (its shard
	// folder inside, for a shard); "" = a folder under CacheDir named after the Output.
	Staging string
	// NoResume discards an earlier run's chunks in Output instead of resuming it.
	NoResume bool
	// Dtype of the embeddings in the file: "float32" (default) or "float16".
	Dtype string
	// Normalize L2-normalises the embeddings (off: they equal CLIP's encode_image).
	Normalize bool
	// Preprocess is Exact (default) or Fast JPEG decoding.
	Preprocess Preprocess

	// Sizes; 0 = chosen by the memory plan from the available memory.
	Memory      int64 // bytes the run may use
	BatchSize   int   // images per engine call
	ChunkSize   int   // rows per chunk file
	Connections int   // downloads in flight
	Decoders    int   // decoding goroutines

	// Timeout is the most one URL may take, retries included; 0 = DefaultTimeout.
	Timeout time.Duration
	// Retries of a URL after timeouts, connection errors, 429 and 5xx: 0 = DefaultRetries,
	// negative = none.
	Retries int
	// UserAgent sent with every request; "" = fetch.DefaultUserAgent (names clipd, its
	// version and the project's URL).
	UserAgent string
	// HostConnections caps the connections to one host; 0 = fetch.DefaultMaxConnsPerHost.
	HostConnections int
	// HostRate caps the requests per second to one host; 0 = no cap.
	HostRate float64
	// IgnoreOptOut fetches images whose response says X-Robots-Tag noai, noimageai, noml,
	// noindex or noimageindex (by default they are failed unread); recorded in the output.
	IgnoreOptOut bool
	// RobotsTxt obeys each host's robots.txt for clipd's user agent.
	RobotsTxt bool
	// AllowPrivateNetworks lets the fetcher connect to loopback, private, link-local and other
	// non-public addresses (refused by default: a URL list must not reach into the machine's
	// own network). Local mirrors and tests need it.
	AllowPrivateNetworks bool
	// S3 is how s3:// inputs, rows and outputs are reached.
	S3 S3
	// Version is recorded in the output's clipd_version attribute; "" = "dev".
	Version string

	// WarnFailureRate: when more than this share of the rows fails, the Summary carries a
	// Warning (and the log a line) with the top reasons; 0 = DefaultWarnFailureRate, negative
	// = never.
	WarnFailureRate float64

	// ProgressEvery is how often Events.Progress is called; 0 = DefaultProgressEvery.
	ProgressEvery time.Duration

	// Hooks let tests stop or hold a run at chosen points.
	Hooks Hooks
}

// Hooks are called from the run's goroutines; nil ones are skipped.
type Hooks struct {
	// AfterBatch is called after each engine batch's rows went to the sink, with the rows
	// this run has written so far.
	AfterBatch func(rows int64)
	// BeforeFinalize is called once the input is done, before the chunks are merged.
	BeforeFinalize func()
	// EngineDecodesOnCPU hands JPEGs to the engine's encoded call on the CPU backend too
	// (whose decoder is the CPU decoders' libjpeg-turbo, Pillow-exact), as DecodeGPU does on
	// CUDA: the GPU-decode path of the pipeline, testable without a GPU.
	EngineDecodesOnCPU bool
	// S3PartSize is the part size of an s3:// output's multipart uploads (0: objstore's),
	// and BeforeS3Part is called before each part: the test that kills the store in the
	// middle of an upload makes uploads small-parted and slow with them.
	S3PartSize   int64
	BeforeS3Part func(part int32)
	// S3RetryFor bounds the retries of one transfer to an s3:// output while the store fails
	// or cannot be reached; 0 = mirror.DefaultRetryFor (5 minutes).
	S3RetryFor time.Duration
	// CPUEngines > 1 opens that many CPU engines (Threads threads each) behind the pipeline,
	// as Devices does with GPUs: the several-engine path, testable without a GPU.
	CPUEngines int
}

// OutputDir is the folder the run writes: Output, or Output/shard-00003-of-00016 for a shard.
// For an s3:// Output it is the folder in the bucket (s3://b/p/shard-00003-of-00016).
func (c Config) OutputDir() string {
	if objstore.IsURL(c.Output) {
		loc, err := c.remoteDir()
		if err != nil {
			return c.Output
		}
		if loc.Key == "" {
			return loc.String()
		}
		return strings.TrimSuffix(loc.String(), "/")
	}
	if c.Shard.Count > 1 {
		return filepath.Join(c.Output, ShardDirName(c.Shard))
	}
	return c.Output
}

// ShardDirName is the name of a shard's folder inside the output folder.
func ShardDirName(s Shard) string { return outfile.ShardDirName(s.Index, s.Count) }

// resolveInput is the input's location as the run's identity records it: an absolute path
// without links for local files and folders (so "urls.txt", "./urls.txt" and its absolute
// path are one run), the spec itself otherwise.
func resolveInput(spec string) string {
	lower := strings.ToLower(spec)
	switch {
	case spec == "-", strings.HasPrefix(lower, "http://"), strings.HasPrefix(lower, "https://"), objstore.IsURL(spec):
		return spec
	case strings.HasPrefix(lower, "openimages:"):
		split := strings.TrimSpace(lower[len("openimages:"):])
		if split == "val" {
			split = "validation"
		}
		return "openimages:" + split
	}
	abs, err := filepath.Abs(spec)
	if err != nil {
		return spec
	}
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		return real
	}
	return abs
}

// withDefaults fills the zero fields that have fixed defaults.
func (c Config) withDefaults() Config {
	if c.Dtype == "" {
		c.Dtype = "float32"
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.Retries == 0 {
		c.Retries = DefaultRetries
	} else if c.Retries < 0 {
		c.Retries = -1
	}
	if c.Version == "" {
		c.Version = "dev"
	}
	if c.ProgressEvery <= 0 {
		c.ProgressEvery = DefaultProgressEvery
	}
	if c.WarnFailureRate == 0 {
		c.WarnFailureRate = DefaultWarnFailureRate
	}
	if c.Decode == "" {
		c.Decode = DecodeCPU
	}
	return c
}

// check rejects impossible settings with an ErrConfig error that names the setting as the
// CLI spells it.
func (c Config) check() error {
	bad := func(format string, args ...any) error { return withKind(ErrConfig, fmt.Errorf(format, args...)) }
	switch {
	case c.Input == "":
		return bad("--input is empty: give a file of URLs, an http(s) or s3:// URL, a folder, - or openimages:SPLIT")
	case c.Output == "":
		return bad("--output is empty: give a directory")
	case !objstore.IsURL(c.Output) && c.Staging != "":
		return bad("--staging applies only to s3:// outputs (the folder a run writes before it uploads); --output %s is a local folder", c.Output)
	case !objstore.IsURL(c.Output) && namesFile(c.Output):
		return bad("--output %s names a file, but it is a folder (the embeddings go to FOLDER/%s): give a folder such as %s",
			c.Output, outfile.FinalName, strings.TrimSuffix(c.Output, filepath.Ext(c.Output)))
	case c.Limit < 0:
		return bad("--limit %d: want 0 (no limit) or more", c.Limit)
	case c.BatchSize < 0 || c.ChunkSize < 0 || c.Connections < 0 || c.Decoders < 0 || c.Threads < 0 || c.Device < 0 || c.Memory < 0:
		return bad("--batch-size, --chunk-size, --connections, --decoders, --threads, --device and --memory must not be negative")
	case c.HostConnections < 0 || c.HostRate < 0:
		return bad("--host-connections and --host-rate must not be negative")
	case c.Timeout < 0:
		return bad("--timeout %v: want a positive duration such as 30s", c.Timeout)
	case c.Dtype != "float32" && c.Dtype != "float16":
		return bad("--dtype %q: want float32 or float16", c.Dtype)
	case c.Preprocess != Exact && c.Preprocess != Fast:
		return bad("--preprocess %d: want exact or fast", c.Preprocess)
	case c.Decode != DecodeAuto && c.Decode != DecodeCPU && c.Decode != DecodeGPU:
		return bad("--decode %q: want auto, cpu or gpu", c.Decode)
	case c.Decode == DecodeGPU && c.Preprocess == Fast:
		return bad("--decode gpu decodes JPEGs at full size, --preprocess fast is a CPU decoder's shortcut: drop one of them")
	case len(c.Devices) > 0 && c.Device != 0:
		return bad("--device %d and --devices %s: give one of them", c.Device, FormatDevices(c.Devices))
	}
	if objstore.IsURL(c.Output) {
		if err := c.checkS3Output(); err != nil {
			return withKind(ErrConfig, err)
		}
	}
	for i, d := range c.Devices {
		switch {
		case d < 0:
			return bad("--devices %s: device %d is negative; CUDA devices are numbered from 0", FormatDevices(c.Devices), d)
		case slices.Contains(c.Devices[:i], d):
			return bad("--devices %s: device %d is listed twice", FormatDevices(c.Devices), d)
		}
	}
	for i, col := range c.SaveColumns {
		switch {
		case outfile.ReservedName(col):
			return bad("--save-columns %s: the output has its own %q; leave it out", col, outfile.SavedName(col))
		case slices.ContainsFunc(c.SaveColumns[:i], func(o string) bool { return outfile.SavedName(o) == outfile.SavedName(col) }):
			return bad("--save-columns: %s is named twice", col)
		}
	}
	if c.TextColumn != strings.TrimSpace(c.TextColumn) || strings.ContainsAny(c.TextColumn, ",\n") {
		return bad("--text-column %q: give one column name, without spaces around it", c.TextColumn)
	}
	if err := c.Shard.Validate(); err != nil {
		return bad("--shard: %v", err)
	}
	switch c.URLKind {
	case "", OriginalURL, ThumbnailURL, MirrorURL:
	default:
		return bad("--url-kind %q: want original, thumbnail or mirror", c.URLKind)
	}
	if c.URLKind != "" && c.URLKind != OriginalURL && !strings.HasPrefix(strings.ToLower(c.Input), "openimages:") {
		return bad("--url-kind %s applies only to openimages:SPLIT inputs", c.URLKind)
	}
	return nil
}

// ParseDevices reads a device list: "0,1,3" (spaces allowed). It does not check the
// devices; Run does (duplicates, negative numbers, devices the backend does not have).
func ParseDevices(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		d, err := strconv.Atoi(f)
		if err != nil {
			return nil, fmt.Errorf("%q is not a device number (want a list such as 0,1,2,3)", f)
		}
		out = append(out, d)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%q lists no device (want a list such as 0,1,2,3)", s)
	}
	return out, nil
}

// FormatDevices writes a device list as ParseDevices reads it.
func FormatDevices(ds []int) string {
	s := make([]string, len(ds))
	for i, d := range ds {
		s[i] = strconv.Itoa(d)
	}
	return strings.Join(s, ",")
}

// namesFile reports whether an --output looks like an HDF5 file's name and is no folder.
func namesFile(out string) bool {
	ext := strings.ToLower(filepath.Ext(out))
	if ext != ".h5" && ext != ".hdf5" {
		return false
	}
	st, err := os.Stat(out)
	return err != nil || !st.IsDir()
}

// ParseMemory reads a memory budget: bytes with a unit ("8GiB", "512MB") or a share of the
// memory available now ("50%").
func ParseMemory(s string) (int64, error) {
	avail, _, _ := plan.Available()
	return plan.ParseMemory(s, avail)
}
