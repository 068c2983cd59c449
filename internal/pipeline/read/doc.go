// Package read loads the bytes of rows that name local files, with a small pool of workers,
// ending every row exactly once as either a body or a failure with a short reason.
package read
