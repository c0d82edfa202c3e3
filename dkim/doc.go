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
package dkim
