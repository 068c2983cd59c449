// Package fetch downloads the bytes of each item's URL into pooled memory with a bounded pool
// of fasthttp workers, ending every item exactly once as either a body or a failure with a
// short reason.
package fetch
