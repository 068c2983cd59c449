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

// Row-major C[m,n] = A[m,k] x B[n,k]^T.
static void blas_gemm_nt(int m, int n, int k, const float *a, const float *b, float *c) {
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, 1.0f, a, k, b, k, 0.0f, c, n);
}

// out[i] = sum of squares of row i of a[n,k].
static void blas_row_sqnorms(int n, int k, const float *a, float *out) {
	for (int i = 0; i < n; i++) out[i] = cblas_sdot(k, a + (size_t)i * k, 1, a + (size_t)i * k, 1);
}

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
*/
import "C"

import (
	"fmt"
	"unsafe"
)

// GemmNT sets c (m x n, row-major) to a (m x k) times the transpose of b (n x k): the dot
// product of every row of a with every row of b.
func GemmNT(m, n, k int, a, b, c []float32) error {
	if m < 0 || n < 0 || k < 0 || len(a) < m*k || len(b) < n*k || len(c) < m*n {
		return fmt.Errorf("blas: GemmNT(%d, %d, %d) with %d, %d, %d values", m, n, k, len(a), len(b), len(c))
	}
	if m == 0 || n == 0 {
		return nil
	}
	if k == 0 {
		clear(c[:m*n])
		return nil
	}
	C.blas_gemm_nt(C.int(m), C.int(n), C.int(k), (*C.float)(&a[0]), (*C.float)(&b[0]), (*C.float)(&c[0]))
	return nil
}

// RowSquaredNorms sets out[i] to the sum of squares of row i of a (n x k, row-major).
func RowSquaredNorms(n, k int, a, out []float32) error {
	if n < 0 || k < 0 || len(a) < n*k || len(out) < n {
		return fmt.Errorf("blas: RowSquaredNorms(%d, %d) with %d, %d values", n, k, len(a), len(out))
	}
	if n == 0 {
		return nil
	}
	if k == 0 {
		clear(out[:n])
		return nil
	}
	C.blas_row_sqnorms(C.int(n), C.int(k), (*C.float)(&a[0]), (*C.float)(&out[0]))
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
