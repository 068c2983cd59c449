// Package read loads the bytes of rows that name local files or s3:// objects, with a small
// pool of workers for each, ending every row exactly once as either a body or a failure with
// a short reason.
package read
