// Package embed turns a list of images into CLIP embeddings in an HDF5 file: the library
// behind `clipd embed`.
//
// Run takes an input (a URL list, an Open Images split, a folder of images), a model and an
// output directory, and writes OUTPUT/Images_Embedded.h5: urls, embeddings (N x D), the
// failed rows with their reasons, and the run's attributes. Rows stream through overlapping
// stages joined by bounded channels:
//
//	source -> fetch (http/https rows) | read (local files) -> decode -> batch (engine) -> sink
//
// When the engine decodes JPEGs itself (Config.Decode, on CUDA by default), a split stage in
// front of the decoders sends JPEG bytes past them to the batch stage, which hands them to the
// engine's encoded call; Config.Devices puts one engine per GPU behind the one batch stage.
//
// Every row ends exactly once: as an embedding, or as a failure with the stage and the reason
// (a 404, a timeout, a corrupt image, a malformed line). The sink writes chunk files
// atomically as it goes, so a run that is interrupted or killed resumes where it stopped when
// Run is called again with the same Config, and the end of the input merges the chunks into
// the final file.
//
// A Go program embeds a URL list with
//
//	sum, err := embed.Run(ctx, embed.Config{
//		Input:   "urls.txt",
//		Weights: "/models/clip-vit-base-patch32",
//		Output:  "out",
//	}, embed.Events{})
//
// Events reports progress and log lines through callbacks; the library itself never writes
// to stdout or stderr. Errors are classified for callers that map them to exit codes:
// errors.Is(err, ErrConfig), ErrInput, ErrOutput, ErrInterrupted; weights problems carry the
// weights and engine packages' own errors.
package embed
