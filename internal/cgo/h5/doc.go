// Package h5 is clipd's own small cgo binding of the HDF5 C library (Debian 12's 1.10.8):
// files, chunked extendible datasets of float32/float16/int64/UTF-8 strings, and scalar
// attributes, with HDF5's error stack turned into Go errors.
package h5
