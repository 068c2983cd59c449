// race_on_test.go: tells tests that the race detector is on.
//go:build race

package sink

const raceEnabled = true
