// Package export writes a clipd output file as what autofaiss and clip-retrieval's index
// step read: img_emb/img_emb_K.npy and metadata/metadata_K.parquet parts, streamed in blocks.
package export
