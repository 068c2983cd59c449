// Package sink writes a run's embeddings and failures to chunk files that make it
// resumable, and Finalize merges them into the final Images_Embedded.h5.
package sink
