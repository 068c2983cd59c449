// Package plan sizes clipd's pipeline (batch size, queue depths, connections, chunk rows,
// the decoded-image budget and the largest image accepted) so that the process's peak
// memory stays under a budget derived from the memory actually available to it.
package plan
