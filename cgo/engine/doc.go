// Package engine is the Go binding of libclipengine: open an engine on a weights file, embed
// batches of RGB8 images, and get typed errors instead of C status codes.
package engine
