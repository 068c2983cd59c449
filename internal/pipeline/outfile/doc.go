// Package outfile is the HDF5 file format clipd writes and reads: file names, the embedded
// and failed tables, root attributes, atomic writes, and the errors that say whether a
// file could not be read (ErrInput), could not be written (ErrOutput) or disagrees with
// another (ErrMismatch).
package outfile
