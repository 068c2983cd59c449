//go:build race

// race_test.go: tells the memory test to use a smaller input under the race detector.

package source

const raceEnabled = true
