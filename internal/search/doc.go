// Package search finds, exactly, the k rows of a clipd output file nearest by cosine to one
// or more query vectors, streaming the file's embeddings in blocks (all the queries scored at
// once by GEMMs over cache-sized sub-blocks) so that memory is bounded by the block, not the
// file.
package search
