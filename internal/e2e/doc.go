// Package e2e holds kiln's end-to-end tests: they build the real binary,
// start it against a fake DNS server and fake mail exchangers on loopback,
// and drive it with real third-party peers (swaks, Postfix's smtp-source)
// and with kill -9. The package has no code of its own outside its tests.
package e2e
