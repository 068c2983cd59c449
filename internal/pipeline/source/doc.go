// Package source streams the URLs to embed — from plain-text, CSV, TSV or parquet lists
// (optionally gzip-compressed; local, over http(s) or in an S3 bucket), folders, tar shards
// (local or in a bucket) and Open Images V7 metadata — as pipeline items, turning malformed
// rows into failures instead of errors.
package source
