// Package sink writes embeddings and failures to HDF5 chunk files that make a run
// resumable, merges them into the final Images_Embedded.h5, and joins shard outputs.
package sink
