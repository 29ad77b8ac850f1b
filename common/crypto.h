/*
 * Small cryptographic helpers on OpenSSL libcrypto: sealing stored secrets with
 * AES-256-GCM under the master key (HERALD_MASTER_KEY), random tokens, SHA-256 and
 * HMAC-SHA256, and constant-time comparison. Pure apart from the system RNG.
 *
 * Sealed format: "HS1" version byte triple || 12-byte random nonce || ciphertext ||
 * 16-byte tag. The version prefix is authenticated as additional data, so a blob
 * cut, extended or with any bit flipped fails to open.
 */
#ifndef HERALD_COMMON_CRYPTO_H
#define HERALD_COMMON_CRYPTO_H
#include <stddef.h>

#define CRYPTO_EINVAL (-1)  /* bad argument or malformed key text */
#define CRYPTO_EAUTH (-2)   /* sealed data is truncated, tampered with, or under another key */
#define CRYPTO_EFAIL (-3)   /* libcrypto failed */

#define CRYPTO_KEY_LEN 32
#define CRYPTO_SEAL_OVERHEAD (3 + 12 + 16)

/*
 * Decodes a master key given as 64 hex digits or as base64 of 32 bytes (with or
 * without padding) into key. Returns 0 or CRYPTO_EINVAL.
 */
__attribute__((warn_unused_result)) int crypto_key_parse(const char *text, unsigned char key[CRYPTO_KEY_LEN]);

/*
 * Encrypts len bytes of plain into out (len + CRYPTO_SEAL_OVERHEAD bytes, caller's
 * buffer). Returns 0, CRYPTO_EINVAL or CRYPTO_EFAIL.
 */
__attribute__((warn_unused_result)) int crypto_seal(const unsigned char key[CRYPTO_KEY_LEN], const void *plain,
                                                    size_t len, unsigned char *out);

/*
 * Decrypts sealed (len bytes) into out (at least len - CRYPTO_SEAL_OVERHEAD + 1 bytes;
 * the plain text is NUL-terminated) and stores its length in *outlen.
 * Returns 0, CRYPTO_EAUTH (wrong key, tampered, truncated) or CRYPTO_EINVAL.
 */
__attribute__((warn_unused_result)) int crypto_open(const unsigned char key[CRYPTO_KEY_LEN],
                                                    const unsigned char *sealed, size_t len, char *out,
                                                    size_t *outlen);

/*
 * crypto_seal() of len bytes of plain, written as lowercase hex in a new NUL-terminated
 * string (free()); NULL when libcrypto fails or memory runs out.
 */
char *crypto_seal_hex(const unsigned char key[CRYPTO_KEY_LEN], const void *plain, size_t len);

/*
 * Opens a crypto_seal_hex() text into out (outlen bytes; the plain text and a NUL must
 * fit). Returns 0, or CRYPTO_EINVAL (no key, not hex, too long for out), CRYPTO_EAUTH
 * (truncated, altered, another key) or CRYPTO_EFAIL, with out set to "". The decoded
 * bytes are wiped.
 */
__attribute__((warn_unused_result)) int crypto_open_hex(const unsigned char *key, const char *hex, char *out,
                                                        size_t outlen);

/* Fills buf with n bytes from the system CSPRNG. Returns 0 or CRYPTO_EFAIL. */
__attribute__((warn_unused_result)) int crypto_random(void *buf, size_t n);

/*
 * Writes a random token of n characters from [0-9A-Za-z] (unbiased) and a NUL into out
 * (n + 1 bytes). Returns 0 or CRYPTO_EFAIL.
 */
__attribute__((warn_unused_result)) int crypto_random_base62(char *out, size_t n);

/*
 * Decodes n hex digits (either case; n even) into out (n / 2 bytes). Returns 0, or
 * CRYPTO_EINVAL for an odd n or a character that is not a hex digit (out then partly
 * written).
 */
__attribute__((warn_unused_result)) int crypto_unhex(const char *hex, size_t n, unsigned char *out);

/* SHA-256 of data into out. */
void crypto_sha256(const void *data, size_t len, unsigned char out[32]);

/* HMAC-SHA256 of data under key into out. */
void crypto_hmac_sha256(const void *key, size_t keylen, const void *data, size_t len, unsigned char out[32]);

/* Writes the lowercase hex of n bytes and a NUL into out (2n + 1 bytes). */
void crypto_hex(const unsigned char *in, size_t n, char *out);

/* Returns 1 when a and b (n bytes each) are equal, in time independent of their contents. */
int crypto_equal(const void *a, const void *b, size_t n);

/* Returns a static description of a CRYPTO_E* code. */
const char *crypto_strerror(int err);

#endif
