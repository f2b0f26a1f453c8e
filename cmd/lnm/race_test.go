//go:build race

package main

// When the tests run with -race, the end-to-end test builds lnm with the race detector too,
// so the real binary is checked under real traffic.
func init() { raceEnabled = true }
