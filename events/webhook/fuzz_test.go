package webhook

import (
	"testing"
	"time"
)

// FuzzVerify feeds Verify arbitrary headers, which must never make it panic,
// and checks that it accepts what Sign made for any secret and body, and
// only with that secret.
func FuzzVerify(f *testing.F) {
	now := time.Unix(1741003260, 0)
	f.Add("0123456789abcdef", "t=1741003260,v1=00", []byte("[]"))
	f.Add("0123456789abcdef", Sign("0123456789abcdef", now.Unix(), []byte("[]")), []byte("[]"))
	f.Add("k", "t=,v1=,=,,", []byte{})
	f.Fuzz(func(t *testing.T, secret, header string, body []byte) {
		Verify(secret, header, body, now, time.Minute) // must not panic
		good := Sign(secret, now.Unix(), body)
		if err := Verify(secret, good, body, now, time.Minute); err != nil {
			t.Fatalf("own signature refused: %v", err)
		}
		if err := Verify(secret+"x", good, body, now, time.Minute); err != ErrBadSignature {
			t.Fatalf("another secret: %v", err)
		}
	})
}
