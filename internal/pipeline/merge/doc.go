// Package merge joins clipd output files (the shards of one input, or several runs) into
// one file, streaming, each URL once.
package merge
