// Package weights locates, downloads (resumable, sha256-verified, atomic) and inspects the
// safetensors weights that the engine loads.
package weights
