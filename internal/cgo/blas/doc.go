// Package blas wraps the few OpenBLAS calls search needs (cblas_sgemm, and row norms through
// cblas_sdot) plus a vectorizable float16 to float32 conversion, each over a whole block in
// one cgo call.
package blas
