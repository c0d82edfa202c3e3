// Package dkim signs kiln's outgoing mail with DKIM (RFC 6376): it loads the
// signing keys (RSA, RFC 8301, and Ed25519, RFC 8463), generates new ones with
// the DNS record to publish, compares a published record with a key, and
// produces the DKIM-Signature header fields for a message.
//
// Signing is the most expensive work kiln does per message, and it is done
// once: at acceptance, before the 250, the submission path calls
// [Signer.Sign] and stores the returned header fields with the message; every
// delivery attempt writes them in front of the stored message. Nothing is
// re-signed on retry, so a signature expiry (x=) must outlast the queue's
// maximum age (see [SigningConfig.CheckMaxAge]).
//
// kiln signs with its own relaxed/relaxed implementation rather than
// go-msgauth's Signer, for three reasons that all come from the hot path:
//
//   - the body is canonicalised and hashed once per message, however many
//     signatures are made (dual RSA + Ed25519, plus the operator's own
//     domain): go-msgauth hashes the body again for each signature;
//   - the signature time (t=) comes from the caller's clock, so tests are
//     deterministic: go-msgauth reads time.Now through an unexported variable;
//   - no goroutine, pipe or copy of the message per signature.
//
// go-msgauth's verifier and dkimpy check every signature this package makes
// in its tests, and a fuzz test compares the two on arbitrary messages.
//
// The message given to the signer must use CRLF line endings only: kiln
// normalises at submission (a stray CR or LF would be read differently by
// different verifiers), and the signer refuses a message that does not.
//
// # Faster RSA signing with OpenSSL
//
// The RSA private-key operation is most of signing's cost, and crypto/rsa
// takes several times as long as OpenSSL for it. A build with cgo (Go's
// default where a C compiler is installed) signs RSA through the system's
// OpenSSL 3 libcrypto instead; CGO_ENABLED=0, or the purego tag, builds
// with Go alone:
//
//	go build ./cmd/kiln                 # with a C compiler: OpenSSL signs RSA
//	CGO_ENABLED=0 go build ./cmd/kiln   # a static binary, crypto/rsa signs
//
// The cgo build needs no OpenSSL headers: libcrypto
// (libcrypto.so.3, OpenSSL 3.0 or later; Debian's libssl3) is opened with
// dlopen on the first RSA signature, and each key is given to it once. The
// signatures are the same bytes crypto/rsa makes (PKCS#1 v1.5 is
// deterministic; the tests compare them, and each key is checked once when
// it is loaded). Without libcrypto at run time, or with a key it will not
// take, kiln signs with crypto/rsa and logs one warning: signing never fails
// for want of OpenSSL. Ed25519 stays with crypto/ed25519, which is faster.
package dkim
