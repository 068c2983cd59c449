/* device.cu: which CUDA device the backend can run on: the driver, the ordinal, compute
   capability 8.0+, its name and memory (behind clip_backend_resolve and create). */
#include <stdio.h>

#include <cuda_runtime.h>

#include "internal.h"

extern "C" clip_status clip_cuda_device_query(int device, char *name, size_t name_len,
                                              int64_t *memory_bytes, char *err, size_t err_len) {
  if (name && name_len) name[0] = 0;
  if (memory_bytes) *memory_bytes = 0;
  int count = 0;
  const cudaError_t cerr = cudaGetDeviceCount(&count);
  if (cerr != cudaSuccess) {
    /* No driver, no device, or a driver older than this runtime needs: say which. */
    cudaGetLastError();
    int drv = 0;
    const int rt = CUDART_VERSION; /* what this library was built against */
    cudaDriverGetVersion(&drv);
    cudaGetLastError();
    clip_format_error(err, err_len,
                      "cuda: no usable CUDA device: %s (%s); the driver supports CUDA %d.%d, "
                      "this library was built with CUDA %d.%d",
                      cudaGetErrorString(cerr), cudaGetErrorName(cerr), drv / 1000,
                      drv % 1000 / 10, rt / 1000, rt % 1000 / 10);
    return CLIP_ERR_UNSUPPORTED;
  }
  if (device >= count) {
    clip_format_error(err, err_len, "cuda: no CUDA device %d (%d found)", device, count);
    return CLIP_ERR_UNSUPPORTED;
  }
  cudaDeviceProp prop;
  const cudaError_t perr = cudaGetDeviceProperties(&prop, device);
  if (perr != cudaSuccess) {
    cudaGetLastError();
    clip_format_error(err, err_len, "cuda: cudaGetDeviceProperties(%d): %s (%s)", device,
                      cudaGetErrorString(perr), cudaGetErrorName(perr));
    return CLIP_ERR_BACKEND;
  }
  if (prop.major < 8) {
    clip_format_error(err, err_len,
                      "cuda: device %d has compute capability %d.%d; this backend needs 8.0+",
                      device, prop.major, prop.minor);
    return CLIP_ERR_UNSUPPORTED;
  }
  if (name && name_len) snprintf(name, name_len, "%s", prop.name);
  if (memory_bytes) *memory_bytes = (int64_t)prop.totalGlobalMem;
  return CLIP_OK;
}
