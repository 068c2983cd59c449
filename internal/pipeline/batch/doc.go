// Package batch feeds decoded images to the engine in batches from one goroutine, keeping the
// engine busy whenever images are queued, and turns its output into (optionally L2-normalised)
// embedding rows.
package batch
