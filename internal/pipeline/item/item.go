// Package item holds what every pipeline stage passes along: one input row, the row with its
// encoded image bytes, and the failure a row ends as when it does not become an embedding.
//
// The stage contract. Every stage is a package with a constructor
//
//	Start(ctx, in <-chan In, fails chan<- item.Failure, opt Options) *Stage
//
// that starts its workers and returns at once; Stage.Out() is its bounded output channel,
// closed after in is closed and everything read from it has come out. An input row ends in
// exactly one place: on Out (passed on), on fails (judged: the sink lists it with its stage
// and reason), or dropped because ctx ended (never judged: it belongs to the next run). Once
// ctx ends a stage stops starting work; its caller still closes in and drains Out. The owner
// of the fails channel closes it after every stage's Out is closed.
package item

// Item is one input row as it moves through the pipeline.
type Item struct {
	Seq     int64  // position in the input after --shard/--limit filtering: the stable order key
	Line    int64  // 1-based line (or record) number in the source, for messages
	URL     string // http(s) URL to fetch, the absolute path of a local file, or an s3://bucket/key object
	ImageID string // the input's ImageID/id column; empty when there is none
	MD5     string // expected MD5 of the body, base64 (Open Images OriginalMD5); empty if unknown
	Size    int64  // expected body size in bytes (Open Images OriginalSize); 0 if unknown
	// Width and Height are the image's size as encoded, set by the decode stage.
	Width, Height int
	// Columns are the values of the input columns the run carries to the output
	// (source.Options.Columns), by the name asked for; nil when none are asked for.
	Columns map[string]string
	// Text is the row's text to embed beside its image (source.Options.TextColumn): a
	// caption; "" when none is asked for, or the row has none.
	Text string
}

// Local reports whether the row names a local file (an absolute path) rather than a URL.
func (it *Item) Local() bool { return len(it.URL) > 0 && it.URL[0] == '/' }

// Object reports whether the row names an object in a bucket (s3://...), read through the
// S3 API rather than fetched as a URL.
func (it *Item) Object() bool {
	return len(it.URL) > 5 && (it.URL[0] == 's' || it.URL[0] == 'S') && (it.URL[1] == '3') && it.URL[2:5] == "://"
}

// Failure is an item that did not become an embedding, with the stage and a short reason
// ("http 404", "timeout", "too large", "bad line: missing column", ...).
type Failure struct {
	Item
	Stage  string // "source", "fetch", "read", "decode", "embed"
	Reason string
}

// Error lets a Failure travel as an error.
func (f *Failure) Error() string { return f.Stage + ": " + f.Reason }

// Encoded is an item with its encoded image bytes, as the fetch and read stages hand it on.
// The receiver calls Release once Body is no longer needed, so its buffer can be reused.
type Encoded struct {
	Item
	Body    []byte
	release func()
}

// NewEncoded pairs an item with its bytes; release (may be nil) recycles body's buffer.
func NewEncoded(it Item, body []byte, release func()) *Encoded {
	return &Encoded{Item: it, Body: body, release: release}
}

// Release hands Body's buffer back; Body is nil afterwards. Safe to call twice.
func (e *Encoded) Release() {
	if e.release != nil {
		e.release()
		e.release = nil
	}
	e.Body = nil
}
