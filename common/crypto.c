/*
 * Secrets at rest and tokens (see crypto.h): AES-256-GCM through OpenSSL's EVP
 * interface, RAND_bytes for nonces and API keys, one-shot SHA-256 and HMAC. Kept in
 * common/ so that storage, the CLI and serve share one implementation.
 */
#include "common/crypto.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>

static const unsigned char seal_magic[3] = {'H', 'S', '1'};

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int crypto_unhex(const char *hex, size_t n, unsigned char *out)
{
    if (n % 2)
        return CRYPTO_EINVAL;
    for (size_t i = 0; i < n / 2; i++) {
        int hi = hexval((unsigned char)hex[2 * i]), lo = hexval((unsigned char)hex[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return CRYPTO_EINVAL;
        out[i] = (unsigned char)(hi << 4 | lo);
    }
    return 0;
}

static int b64val(int c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+' || c == '-')
        return 62;
    if (c == '/' || c == '_')
        return 63;
    return -1;
}

int crypto_key_parse(const char *text, unsigned char key[CRYPTO_KEY_LEN])
{
    size_t len;

    if (!text)
        return CRYPTO_EINVAL;
    len = strlen(text);
    while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == ' ' || text[len - 1] == '\r'))
        len--;
    if (len == 64 && crypto_unhex(text, 64, key) == 0)
        return 0;
    /* base64: 43 characters carry 258 bits; the last 2 must be zero. */
    while (len > 0 && text[len - 1] == '=')
        len--;
    if (len != 43)
        return CRYPTO_EINVAL;
    {
        unsigned acc = 0;
        int bits = 0;
        size_t o = 0;
        for (size_t i = 0; i < len; i++) {
            int v = b64val((unsigned char)text[i]);
            if (v < 0)
                return CRYPTO_EINVAL;
            acc = (acc << 6) | (unsigned)v;
            bits += 6;
            if (bits >= 8) {
                bits -= 8;
                if (o < CRYPTO_KEY_LEN)
                    key[o++] = (unsigned char)(acc >> bits);
                acc &= (1u << bits) - 1;
            }
        }
        if (o != CRYPTO_KEY_LEN || acc != 0)
            return CRYPTO_EINVAL;
    }
    return 0;
}

int crypto_seal(const unsigned char key[CRYPTO_KEY_LEN], const void *plain, size_t len, unsigned char *out)
{
    EVP_CIPHER_CTX *c;
    unsigned char *nonce = out + 3, *ct = out + 3 + 12;
    int n = 0, fin = 0, rc = CRYPTO_EFAIL;

    if (!key || (!plain && len) || !out || len > (1u << 30))
        return CRYPTO_EINVAL;
    memcpy(out, seal_magic, 3);
    if (RAND_bytes(nonce, 12) != 1)
        return CRYPTO_EFAIL;
    c = EVP_CIPHER_CTX_new();
    if (!c)
        return CRYPTO_EFAIL;
    if (EVP_EncryptInit_ex(c, EVP_aes_256_gcm(), NULL, NULL, NULL) != 1 ||
        EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_IVLEN, 12, NULL) != 1 ||
        EVP_EncryptInit_ex(c, NULL, NULL, key, nonce) != 1 || EVP_EncryptUpdate(c, NULL, &n, seal_magic, 3) != 1 ||
        EVP_EncryptUpdate(c, ct, &n, plain, (int)len) != 1 || EVP_EncryptFinal_ex(c, ct + n, &fin) != 1 ||
        EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, 16, ct + len) != 1)
        goto out;
    rc = 0;
out:
    EVP_CIPHER_CTX_free(c);
    return rc;
}

char *crypto_seal_hex(const unsigned char key[CRYPTO_KEY_LEN], const void *plain, size_t len)
{
    size_t slen = len + CRYPTO_SEAL_OVERHEAD;
    unsigned char *sealed = malloc(slen);
    char *hex = malloc(2 * slen + 1);

    if (!sealed || !hex || crypto_seal(key, plain, len, sealed) != 0) {
        free(sealed);
        free(hex);
        return NULL;
    }
    crypto_hex(sealed, slen, hex);
    free(sealed);
    return hex;
}

int crypto_open_hex(const unsigned char *key, const char *hex, char *out, size_t outlen)
{
    size_t n = strlen(hex), len;
    unsigned char *raw;
    int rc;

    if (outlen == 0)
        return CRYPTO_EINVAL;
    out[0] = '\0';
    if (!key || n % 2)
        return CRYPTO_EINVAL;
    if (n / 2 < CRYPTO_SEAL_OVERHEAD)
        return CRYPTO_EAUTH; /* truncated */
    /* crypto_open writes the plain text and a NUL: n / 2 - overhead + 1 bytes. */
    if (n / 2 - CRYPTO_SEAL_OVERHEAD >= outlen)
        return CRYPTO_EINVAL;
    if (!(raw = malloc(n / 2)))
        return CRYPTO_EFAIL;
    rc = crypto_unhex(hex, n, raw);
    if (rc == 0)
        rc = crypto_open(key, raw, n / 2, out, &len);
    memset(raw, 0, n / 2);
    free(raw);
    if (rc != 0) {
        out[0] = '\0';
        return rc;
    }
    out[len] = '\0';
    return 0;
}

int crypto_open(const unsigned char key[CRYPTO_KEY_LEN], const unsigned char *sealed, size_t len, char *out,
                size_t *outlen)
{
    EVP_CIPHER_CTX *c;
    size_t ctlen;
    int n = 0, fin = 0, rc = CRYPTO_EAUTH;

    if (!key || !sealed || !out)
        return CRYPTO_EINVAL;
    if (len < CRYPTO_SEAL_OVERHEAD || memcmp(sealed, seal_magic, 3) != 0)
        return CRYPTO_EAUTH;
    ctlen = len - CRYPTO_SEAL_OVERHEAD;
    c = EVP_CIPHER_CTX_new();
    if (!c)
        return CRYPTO_EFAIL;
    if (EVP_DecryptInit_ex(c, EVP_aes_256_gcm(), NULL, NULL, NULL) != 1 ||
        EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_IVLEN, 12, NULL) != 1 ||
        EVP_DecryptInit_ex(c, NULL, NULL, key, sealed + 3) != 1 ||
        EVP_DecryptUpdate(c, NULL, &n, seal_magic, 3) != 1 ||
        EVP_DecryptUpdate(c, (unsigned char *)out, &n, sealed + 15, (int)ctlen) != 1 ||
        EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, 16, (void *)(sealed + 15 + ctlen)) != 1)
        goto out;
    if (EVP_DecryptFinal_ex(c, (unsigned char *)out + n, &fin) != 1) {
        OPENSSL_cleanse(out, ctlen);
        goto out;
    }
    out[ctlen] = '\0';
    *outlen = ctlen;
    rc = 0;
out:
    EVP_CIPHER_CTX_free(c);
    return rc;
}

int crypto_random(void *buf, size_t n)
{
    return RAND_bytes(buf, (int)n) == 1 ? 0 : CRYPTO_EFAIL;
}

int crypto_random_base62(char *out, size_t n)
{
    static const char alphabet[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    unsigned char b[64];
    size_t o = 0;

    while (o < n) {
        if (RAND_bytes(b, sizeof(b)) != 1)
            return CRYPTO_EFAIL;
        /* 248 = 4 * 62: rejecting bytes above it keeps every character equally likely. */
        for (size_t i = 0; i < sizeof(b) && o < n; i++)
            if (b[i] < 248)
                out[o++] = alphabet[b[i] % 62];
    }
    out[n] = '\0';
    return 0;
}

void crypto_sha256(const void *data, size_t len, unsigned char out[32])
{
    SHA256(data, len, out);
}

void crypto_hmac_sha256(const void *key, size_t keylen, const void *data, size_t len, unsigned char out[32])
{
    unsigned int olen = 32;
    HMAC(EVP_sha256(), key, (int)keylen, data, len, out, &olen);
}

void crypto_hex(const unsigned char *in, size_t n, char *out)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hex[in[i] >> 4];
        out[2 * i + 1] = hex[in[i] & 15];
    }
    out[2 * n] = '\0';
}

int crypto_equal(const void *a, const void *b, size_t n)
{
    return CRYPTO_memcmp(a, b, n) == 0;
}

const char *crypto_strerror(int err)
{
    switch (err) {
    case 0:
        return "ok";
    case CRYPTO_EINVAL:
        return "invalid argument";
    case CRYPTO_EAUTH:
        return "authentication failed (wrong key or tampered data)";
    case CRYPTO_EFAIL:
        return "libcrypto failure";
    }
    return "unknown error";
}
