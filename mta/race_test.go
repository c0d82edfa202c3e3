//go:build race

package mta

// raceDetector is true when the tests run under -race: the long warm-up
// simulations, which the plain run covers, skip there to keep the suite's
// time in bounds.
const raceDetector = true
