// Package item holds the record that every pipeline stage passes along: one input row, and
// the failure a row ends as when it does not become an embedding.
package item

// Item is one input row as it moves through the pipeline.
type Item struct {
	Seq     int64  // position in the input after --shard/--limit filtering: the stable order key
	Line    int64  // 1-based line (or record) number in the source, for messages
	URL     string // http(s) URL to fetch
	ImageID string // the input's ImageID/id column; empty when there is none
	MD5     string // expected MD5 of the body, base64 (Open Images OriginalMD5); empty if unknown
	Size    int64  // expected body size in bytes (Open Images OriginalSize); 0 if unknown
}

// Failure is an item that did not become an embedding, with the stage and a short reason
// ("http 404", "timeout", "too large", "bad line: missing column", ...).
type Failure struct {
	Item
	Stage  string // "source", "fetch", "decode", "embed"
	Reason string
}

// Error lets a Failure travel as an error.
func (f *Failure) Error() string { return f.Stage + ": " + f.Reason }
