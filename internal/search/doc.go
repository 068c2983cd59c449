// Package search finds, exactly, the k rows of a clipd output file nearest by cosine to one
// or more query vectors, streaming the file's embeddings in blocks (one GEMM per block for
// all the queries) so that memory is bounded by the block, not the file.
package search
