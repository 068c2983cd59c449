// Package weightstest serves weights the way the Hugging Face hub does, on 127.0.0.1, with
// faults on demand (5xx, dropped connections, ignored ranges, stalls) for download tests.
package weightstest
