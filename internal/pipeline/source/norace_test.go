//go:build !race

// norace_test.go: the memory test's full-size input without the race detector.

package source

const raceEnabled = false
