// Package decodebench holds the decoder's benchmarks: decode alone and decode plus the
// engine's CPU preprocessing, in exact and fast modes, images/s per core (it links libclipengine,
// which package decode itself does not need).
package decodebench
