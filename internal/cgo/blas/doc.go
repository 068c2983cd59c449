// Package blas wraps the few OpenBLAS calls search needs (cblas_sgemm for the cosine numerators,
// cblas_sdot for the row norms) plus a vectorizable float16 to float32 conversion, each over a whole block in
// one cgo call.
package blas
