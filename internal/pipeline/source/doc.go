// Package source streams the URLs to embed — from plain-text, CSV or TSV lists (optionally
// gzip-compressed, local or over http(s)) and from Open Images V7 metadata — as pipeline
// items, turning malformed rows into failures instead of errors.
package source
