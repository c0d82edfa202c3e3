package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"time"
)

// Header names of a POST.
const (
	SignatureHeader = "Kiln-Signature" // t=<unix seconds>,v1=<hex HMAC-SHA256>
	TimestampHeader = "Kiln-Timestamp" // <unix seconds>, the same t
)

// Errors of Verify.
var (
	ErrNoSignature  = errors.New("webhook: missing or malformed signature header")
	ErrBadSignature = errors.New("webhook: signature does not match")
	ErrStale        = errors.New("webhook: signature timestamp outside the tolerance")
)

// Sign returns the Kiln-Signature header value for body sent at unix time t:
// "t=<t>,v1=<hex of HMAC-SHA256(secret, "<t>." + body)>". Signing the
// timestamp with the body lets a receiver refuse a replayed request.
func Sign(secret string, t int64, body []byte) string {
	return "t=" + strconv.FormatInt(t, 10) + ",v1=" + hex.EncodeToString(mac(secret, t, body))
}

func mac(secret string, t int64, body []byte) []byte {
	h := hmac.New(sha256.New, []byte(secret))
	h.Write(strconv.AppendInt(nil, t, 10))
	h.Write([]byte{'.'})
	h.Write(body)
	return h.Sum(nil)
}

// Verify checks a Kiln-Signature header against the raw request body: the
// signature must be one of its v1 values (several are allowed, for a receiver
// rotating secrets to try each) and its timestamp within tolerance of now,
// either way. A tolerance of zero or less skips the timestamp check, which
// only tests should do.
func Verify(secret, header string, body []byte, now time.Time, tolerance time.Duration) error {
	var t int64
	var haveT bool
	var sigs [][]byte
	for part := range strings.SplitSeq(header, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return ErrNoSignature
		}
		switch k {
		case "t":
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || haveT {
				return ErrNoSignature
			}
			t, haveT = n, true
		case "v1":
			b, err := hex.DecodeString(v)
			if err != nil {
				return ErrNoSignature
			}
			sigs = append(sigs, b)
		}
	}
	if !haveT || len(sigs) == 0 {
		return ErrNoSignature
	}
	want := mac(secret, t, body)
	ok := false
	for _, s := range sigs {
		if hmac.Equal(s, want) {
			ok = true
		}
	}
	if !ok {
		return ErrBadSignature
	}
	if tolerance > 0 {
		d := now.Sub(time.Unix(t, 0))
		if d < -tolerance || d > tolerance {
			return ErrStale
		}
	}
	return nil
}
