//go:build openssl && !cgo

package dkim

// The openssl build tag asks for RSA signing through OpenSSL's libcrypto,
// which takes cgo (a cgo build uses it without the tag): build with
// CGO_ENABLED=1 and a C compiler, or without the tag for Go's crypto/rsa.
// This undefined name stops the build here instead of leaving an operator
// with a binary that silently does not use OpenSSL.
var _ = openssl_build_tag_needs_CGO_ENABLED_1
