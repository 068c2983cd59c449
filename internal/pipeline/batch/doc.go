// Package batch feeds decoded images (and JPEG bytes, to an engine that decodes them itself)
// to one or more engines in batches, one goroutine per engine, keeping every engine busy
// whenever images are queued, and turns their output into (optionally L2-normalised)
// embedding rows.
package batch
