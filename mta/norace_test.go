//go:build !race

package mta

const raceDetector = false
