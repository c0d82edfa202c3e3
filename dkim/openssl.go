//go:build cgo && !purego

package dkim

// RSA signing through OpenSSL's libcrypto, for builds with the openssl tag.
//
// libcrypto is opened at run time with dlopen, on the first RSA signature,
// so the binary links against nothing but the C library and builds without
// OpenSSL's headers: the few functions used are declared below. They are
// OpenSSL 3's EVP interface, and OpenSSL 3.0 or later is required. Each key
// is decoded into an EVP_PKEY once, on its first signature, and is only
// read after that, by any number of goroutines at once; each signature
// makes a short-lived EVP_PKEY_CTX of its own, which costs well under 1% of
// the RSA operation.
//
// Whatever goes wrong, signing does not fail because of OpenSSL: without
// libcrypto, with a key it will not take, or with a signature that differs
// from crypto/rsa's on a check made when the key is loaded, the key signs
// with crypto/rsa, and one warning says why.

/*
#cgo LDFLAGS: -ldl
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

// OpenSSL's objects are opaque here: only pointers to them pass through.
typedef struct kiln_ossl {
	unsigned long (*version_num)(void);
	const char *(*version)(int);
	void *(*d2i_private_key)(int, void **, const unsigned char **, long);
	int (*pkey_get_bits)(const void *);
	void (*pkey_free)(void *);
	void *(*ctx_new_from_pkey)(void *, void *, const char *);
	void (*ctx_free)(void *);
	int (*sign_init)(void *);
	int (*set_rsa_padding)(void *, int);
	int (*set_signature_md)(void *, const void *);
	const void *(*sha256)(void);
	int (*sign)(void *, unsigned char *, size_t *, const unsigned char *, size_t);
	void (*err_clear)(void);
	unsigned long (*err_get)(void);
	void (*err_string)(unsigned long, char *, size_t);
} kiln_ossl;

// Constants from OpenSSL's headers, stable across versions.
#define KILN_EVP_PKEY_RSA 6       // NID_rsaEncryption
#define KILN_RSA_PKCS1_PADDING 1
#define KILN_OPENSSL_VERSION 0

// kiln_ossl_open loads the library called name and resolves every function;
// on failure it returns NULL with the reason in err.
static kiln_ossl *kiln_ossl_open(const char *name, char *err, size_t errlen) {
	void *h = dlopen(name, RTLD_NOW | RTLD_LOCAL);
	if (h == NULL) {
		const char *e = dlerror();
		snprintf(err, errlen, "%s", e ? e : "dlopen failed");
		return NULL;
	}
	kiln_ossl *l = calloc(1, sizeof *l);
	if (l == NULL) {
		dlclose(h);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	static const char *const names[] = {
		"OpenSSL_version_num", "OpenSSL_version", "d2i_PrivateKey",
		"EVP_PKEY_get_bits", "EVP_PKEY_free", "EVP_PKEY_CTX_new_from_pkey",
		"EVP_PKEY_CTX_free", "EVP_PKEY_sign_init", "EVP_PKEY_CTX_set_rsa_padding",
		"EVP_PKEY_CTX_set_signature_md", "EVP_sha256", "EVP_PKEY_sign",
		"ERR_clear_error", "ERR_get_error", "ERR_error_string_n",
	};
	void **slots[] = {
		(void **)&l->version_num, (void **)&l->version, (void **)&l->d2i_private_key,
		(void **)&l->pkey_get_bits, (void **)&l->pkey_free, (void **)&l->ctx_new_from_pkey,
		(void **)&l->ctx_free, (void **)&l->sign_init, (void **)&l->set_rsa_padding,
		(void **)&l->set_signature_md, (void **)&l->sha256, (void **)&l->sign,
		(void **)&l->err_clear, (void **)&l->err_get, (void **)&l->err_string,
	};
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
		*slots[i] = dlsym(h, names[i]);
		if (*slots[i] == NULL) {
			snprintf(err, errlen, "%s has no %s (OpenSSL 3.0 or later is needed)", name, names[i]);
			free(l);
			dlclose(h);
			return NULL;
		}
	}
	return l;
}

static unsigned long kiln_ossl_version_num(const kiln_ossl *l) { return l->version_num(); }

static const char *kiln_ossl_version(const kiln_ossl *l) { return l->version(KILN_OPENSSL_VERSION); }

static void kiln_ossl_err_string(const kiln_ossl *l, unsigned long code, char *buf, size_t n) {
	l->err_string(code, buf, n);
}

// kiln_rsa_load decodes a PKCS#1 RSAPrivateKey. libcrypto's error queue is
// per thread, so its first error is read here, in the same call.
static void *kiln_rsa_load(const kiln_ossl *l, const unsigned char *der, long n, int *bits, unsigned long *err) {
	l->err_clear();
	const unsigned char *p = der;
	void *k = l->d2i_private_key(KILN_EVP_PKEY_RSA, NULL, &p, n);
	if (k == NULL) {
		*err = l->err_get();
		l->err_clear();
		return NULL;
	}
	*bits = l->pkey_get_bits(k);
	return k;
}

static void kiln_rsa_free(const kiln_ossl *l, void *k) { l->pkey_free(k); }

// kiln_rsa_sign makes an RSASSA-PKCS1-v1_5 signature of a SHA-256 digest
// (RFC 8017 §8.2.1: OpenSSL adds the DigestInfo prefix, as Go does).
static int kiln_rsa_sign(const kiln_ossl *l, void *k, const unsigned char *digest, size_t dlen,
                         unsigned char *sig, size_t *siglen, unsigned long *err) {
	l->err_clear();
	void *ctx = l->ctx_new_from_pkey(NULL, k, NULL);
	int ok = ctx != NULL
		&& l->sign_init(ctx) == 1
		&& l->set_rsa_padding(ctx, KILN_RSA_PKCS1_PADDING) > 0
		&& l->set_signature_md(ctx, l->sha256()) > 0
		&& l->sign(ctx, sig, siglen, digest, dlen) == 1;
	if (!ok) {
		*err = l->err_get();
		l->err_clear();
	}
	l->ctx_free(ctx);
	return ok;
}
*/
import "C"

import (
	"bytes"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"unsafe"
)

// libcryptoNames are the libraries tried, in order: OpenSSL 3's soname,
// then the development link, which may name a later version.
var libcryptoNames = []string{"libcrypto.so.3", "libcrypto.so"}

func init() {
	newRSASigner = func(name string, priv *rsa.PrivateKey) crypto.Signer { return &opensslRSA{name: name, priv: priv} }
}

// libcrypto is the process's one handle on the library, opened by the
// first RSA signature.
var libcrypto = sync.OnceValues(func() (*C.kiln_ossl, error) {
	l, err := openLibcrypto(libcryptoNames)
	if err != nil {
		slog.Warn("dkim: OpenSSL's libcrypto cannot be loaded: RSA signatures use Go's crypto/rsa", "err", err)
		return nil, err
	}
	slog.Info("dkim: RSA signatures use OpenSSL's libcrypto", "version", C.GoString(C.kiln_ossl_version(l)))
	return l, nil
})

// openLibcrypto opens the first of names that loads and is OpenSSL 3.0 or
// later.
func openLibcrypto(names []string) (*C.kiln_ossl, error) {
	var errs []string
	for _, name := range names {
		cname := C.CString(name)
		var buf [256]C.char
		l := C.kiln_ossl_open(cname, &buf[0], C.size_t(len(buf)))
		C.free(unsafe.Pointer(cname))
		if l == nil {
			errs = append(errs, C.GoString(&buf[0]))
			continue
		}
		if v := C.kiln_ossl_version_num(l); v < 0x30000000 {
			// Left open: unloading a library is not worth the risk.
			errs = append(errs, fmt.Sprintf("%s is %s: OpenSSL 3.0 or later is needed", name, C.GoString(C.kiln_ossl_version(l))))
			continue
		}
		return l, nil
	}
	return nil, errors.New(strings.Join(errs, "; "))
}

func opensslError(l *C.kiln_ossl, code C.ulong) error {
	if code == 0 {
		return errors.New("libcrypto failed without saying why")
	}
	var buf [256]C.char
	C.kiln_ossl_err_string(l, code, &buf[0], C.size_t(len(buf)))
	return errors.New(C.GoString(&buf[0]))
}

// opensslRSA signs with an RSA key loaded into libcrypto. Only SHA-256
// PKCS#1 v1.5 signatures, the ones DKIM makes, go through OpenSSL; any
// other request goes to crypto/rsa.
type opensslRSA struct {
	name string // the key's record name, for the log
	priv *rsa.PrivateKey

	once sync.Once
	lib  *C.kiln_ossl
	pkey unsafe.Pointer // the key's EVP_PKEY; nil: crypto/rsa signs
	// warned is set after the first signature OpenSSL failed to make,
	// which is logged; later ones fall back to crypto/rsa quietly.
	warned sync.Once
}

func (s *opensslRSA) Public() crypto.PublicKey { return s.priv.Public() }

// Sign is crypto.Signer's: for a SHA-256 digest without PSS it returns
// the PKCS#1 v1.5 signature, made by OpenSSL when it can, by crypto/rsa
// otherwise. The two are identical: PKCS#1 v1.5 is deterministic.
func (s *opensslRSA) Sign(rand io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if _, pss := opts.(*rsa.PSSOptions); pss || opts.HashFunc() != crypto.SHA256 || len(digest) != sha256.Size {
		return s.priv.Sign(rand, digest, opts)
	}
	s.once.Do(s.load)
	if s.pkey == nil {
		return rsa.SignPKCS1v15(nil, s.priv, crypto.SHA256, digest)
	}
	sig, err := s.sign(digest)
	if err != nil {
		s.warned.Do(func() {
			slog.Warn("dkim: OpenSSL failed to sign: this signature and later failures use Go's crypto/rsa", "key", s.name, "err", err)
		})
		return rsa.SignPKCS1v15(nil, s.priv, crypto.SHA256, digest)
	}
	return sig, nil
}

func (s *opensslRSA) sign(digest []byte) ([]byte, error) {
	sig := make([]byte, (s.priv.N.BitLen()+7)/8)
	n := C.size_t(len(sig))
	var code C.ulong
	if C.kiln_rsa_sign(s.lib, s.pkey, (*C.uchar)(&digest[0]), C.size_t(len(digest)), (*C.uchar)(&sig[0]), &n, &code) != 1 {
		return nil, opensslError(s.lib, code)
	}
	// Keep the key reachable, and its cleanup from freeing pkey, until
	// OpenSSL is done with it.
	runtime.KeepAlive(s)
	if int(n) != len(sig) {
		return nil, fmt.Errorf("signature of %d bytes, want %d", n, len(sig))
	}
	return sig, nil
}

// load gives the key to libcrypto and checks that OpenSSL signs as
// crypto/rsa does before trusting it; on any failure pkey stays nil.
func (s *opensslRSA) load() {
	lib, err := libcrypto()
	if err != nil {
		return // already logged, once for the process
	}
	pkey, err := loadRSA(lib, s.priv)
	if err == nil {
		s.lib, s.pkey = lib, pkey
		runtime.AddCleanup(s, func(k unsafe.Pointer) { C.kiln_rsa_free(lib, k) }, pkey)
		err = s.selfCheck()
		if err != nil {
			s.pkey = nil
		}
	}
	if err != nil {
		slog.Warn("dkim: this RSA key cannot sign through OpenSSL: it uses Go's crypto/rsa", "key", s.name, "err", err)
	}
}

func loadRSA(lib *C.kiln_ossl, priv *rsa.PrivateKey) (unsafe.Pointer, error) {
	der := x509.MarshalPKCS1PrivateKey(priv)
	defer clear(der)
	var bits C.int
	var code C.ulong
	pkey := C.kiln_rsa_load(lib, (*C.uchar)(&der[0]), C.long(len(der)), &bits, &code)
	if pkey == nil {
		return nil, fmt.Errorf("decoding the key: %w", opensslError(lib, code))
	}
	if int(bits) != priv.N.BitLen() {
		C.kiln_rsa_free(lib, pkey)
		return nil, fmt.Errorf("OpenSSL read a %d-bit key, not %d", bits, priv.N.BitLen())
	}
	return pkey, nil
}

// selfCheck signs one digest both ways and compares.
func (s *opensslRSA) selfCheck() error {
	digest := sha256.Sum256([]byte("kiln dkim self-check"))
	want, err := rsa.SignPKCS1v15(nil, s.priv, crypto.SHA256, digest[:])
	if err != nil {
		return err
	}
	got, err := s.sign(digest[:])
	if err != nil {
		return err
	}
	if !bytes.Equal(got, want) {
		return errors.New("its signature differs from crypto/rsa's")
	}
	return nil
}
