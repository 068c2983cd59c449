// blas.go: the cgo wrapper: one call per block of rows, so the cgo crossing is paid once per
// block, not per row; Go slices are passed as pointers for the call's duration only (cgo's
// rules allow it: C keeps none of them).

package blas

/*
#cgo pkg-config: openblas
#cgo CFLAGS: -O3
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cblas.h>

// IEEE half to float, exact for every input (normals, subnormals, zeros, Inf, NaN payloads),
// without branches so that the compiler vectorizes the loop: the 15 magnitude bits shifted
// into a float's place are the value times 2^-112 (also for subnormals, as a float
// subnormal), so one exact multiply by 2^112 scales them back; Inf/NaN get the all-ones
// exponent.
static void blas_f16_to_f32(size_t n, const uint16_t *in, float *out) {
	for (size_t i = 0; i < n; i++) {
		uint32_t h = in[i];
		uint32_t em = h & 0x7fffu;
		uint32_t bits = em << 13;
		float f;
		memcpy(&f, &bits, 4);
		f *= 0x1p112f;
		memcpy(&bits, &f, 4);
		bits |= (em >= 0x7c00u ? 0x7f800000u : 0u) | ((h & 0x8000u) << 16);
		memcpy(&out[i], &bits, 4);
	}
}

// Cosine numerators and row norms of one block, a sub-block at a time so that the rows the
// norms pass brings into the cache are still there for the GEMM (one pass over the block's
// memory instead of two): sqnorms[j] = |b_j|^2, c[i*n+j] = a_i . b_j.
// OpenBLAS runs single-threaded, as the engine runs it (engine/src/gemm.c; its thread count
// is process-wide): a sub-block's GEMM is too small to share, and OpenBLAS's threads only
// busy-wait against the goroutine that reads the next block (measured: 8 queries over
// 200,000 x 512 took 0.73-0.94 s with 2 threads, 0.22-0.53 s with 1).
static void blas_scores_ld(int m, int n, int k, int sub, const float *a, const float *b, float *c, int ldc, float *sqnorms) {
	if (openblas_get_num_threads() != 1) openblas_set_num_threads(1);
	for (int j0 = 0; j0 < n; j0 += sub) {
		int nj = n - j0 < sub ? n - j0 : sub;
		const float *bj = b + (size_t)j0 * k;
		for (int j = 0; j < nj; j++) sqnorms[j0 + j] = cblas_sdot(k, bj + (size_t)j * k, 1, bj + (size_t)j * k, 1);
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, nj, k, 1.0f, a, k, bj, k, 0.0f, c + j0, ldc);
	}
}

static void blas_scores(int m, int n, int k, int sub, const float *a, const float *b, float *c, float *sqnorms) {
	blas_scores_ld(m, n, k, sub, a, b, c, n, sqnorms);
}

// blas_scores for float16 rows: each sub-block is converted into scratch[sub * k] first, so
// the float32 rows exist only in the cache (the block's memory is read once, at half size).
static void blas_scores_f16(int m, int n, int k, int sub, const float *a, const uint16_t *b, float *c, float *sqnorms, float *scratch) {
	for (int j0 = 0; j0 < n; j0 += sub) {
		int nj = n - j0 < sub ? n - j0 : sub;
		blas_f16_to_f32((size_t)nj * k, b + (size_t)j0 * k, scratch);
		blas_scores_ld(m, nj, k, nj, a, scratch, c + j0, n, sqnorms + j0);
	}
}

*/
import "C"

import (
	"fmt"
	"unsafe"
)

// Scores sets c (m x n, row-major) to a (m x k) times the transpose of b (n x k), and
// sqnorms[j] to the sum of squares of row j of b, sub rows of b at a time (a sub-block that
// fits the CPU's cache: the norms and the GEMM then read b from memory once).
func Scores(m, n, k, sub int, a, b, c, sqnorms []float32) error {
	if m < 0 || n < 0 || k < 1 || sub < 1 || len(a) < m*k || len(b) < n*k || len(c) < m*n || len(sqnorms) < n {
		return fmt.Errorf("blas: Scores(%d, %d, %d, %d) with %d, %d, %d, %d values", m, n, k, sub, len(a), len(b), len(c), len(sqnorms))
	}
	if m == 0 || n == 0 {
		return nil
	}
	C.blas_scores(C.int(m), C.int(n), C.int(k), C.int(sub), (*C.float)(&a[0]), (*C.float)(&b[0]), (*C.float)(&c[0]), (*C.float)(&sqnorms[0]))
	return nil
}

// ScoresHalf is Scores for rows b stored as IEEE half-precision values (their bits): each
// sub-block is converted exactly into scratch (at least sub x k values) and scored there, so
// the block is read from memory once, at half the size of float32 rows.
func ScoresHalf(m, n, k, sub int, a []float32, b []uint16, c, sqnorms, scratch []float32) error {
	if m < 0 || n < 0 || k < 1 || sub < 1 || len(a) < m*k || len(b) < n*k || len(c) < m*n || len(sqnorms) < n || len(scratch) < min(sub, n)*k {
		return fmt.Errorf("blas: ScoresHalf(%d, %d, %d, %d) with %d, %d, %d, %d, %d values", m, n, k, sub, len(a), len(b), len(c), len(sqnorms), len(scratch))
	}
	if m == 0 || n == 0 {
		return nil
	}
	C.blas_scores_f16(C.int(m), C.int(n), C.int(k), C.int(sub), (*C.float)(&a[0]), (*C.uint16_t)(unsafe.Pointer(&b[0])), (*C.float)(&c[0]),
		(*C.float)(&sqnorms[0]), (*C.float)(&scratch[0]))
	return nil
}

// Float16ToFloat32 converts the IEEE half-precision values in (as bits) to out, exactly.
func Float16ToFloat32(in []uint16, out []float32) {
	n := min(len(in), len(out))
	if n == 0 {
		return
	}
	C.blas_f16_to_f32(C.size_t(n), (*C.uint16_t)(unsafe.Pointer(&in[0])), (*C.float)(&out[0]))
}
