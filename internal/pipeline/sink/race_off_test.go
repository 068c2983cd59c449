// race_off_test.go: tells tests that the race detector is off.
//go:build !race

package sink

const raceEnabled = false
