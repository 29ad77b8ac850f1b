/*
 * Twilio request signatures (X-Twilio-Signature), for the webhooks herald receives
 * and the callbacks the simulator sends. The signed data is streamed into the HMAC
 * rather than concatenated, so no buffer grows with the number of parameters except
 * one array of pointers used to sort them. URL variants (default port added, port
 * removed) follow Twilio's helper libraries: Twilio signs the URL it was given,
 * while a proxy in front of herald may report it with or without the port.
 */
#include "provider/signature.h"
#include "common/xalloc.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define SHA1_LEN 20
#define SHA256_HEX_LEN 64

static int param_cmp(const void *a, const void *b)
{
    const twilio_param_t *x = *(const twilio_param_t *const *)a;
    const twilio_param_t *y = *(const twilio_param_t *const *)b;
    int r = strcmp(x->name, y->name);

    return r ? r : strcmp(x->value, y->value);
}

/*
 * Returns the parameters sorted by name then value with exact duplicates dropped
 * (free the array with free()); *n is updated to the number kept.
 */
static const twilio_param_t **sort_params(const twilio_param_t *params, size_t *n)
{
    const twilio_param_t **v;
    size_t kept = 0;

    if (*n == 0)
        return NULL;
    v = xmalloc(*n * sizeof(*v));
    for (size_t i = 0; i < *n; i++)
        v[i] = &params[i];
    qsort(v, *n, sizeof(*v), param_cmp);
    for (size_t i = 0; i < *n; i++) {
        if (kept > 0 && param_cmp(&v[kept - 1], &v[i]) == 0)
            continue;
        v[kept++] = v[i];
    }
    *n = kept;
    return v;
}

static int check_params(const twilio_param_t *params, size_t n)
{
    if (n > 0 && params == NULL)
        return TWILIO_SIG_EINVAL;
    for (size_t i = 0; i < n; i++)
        if (params[i].name == NULL || params[i].value == NULL)
            return TWILIO_SIG_EINVAL;
    return 0;
}

/*
 * HMAC-SHA1 (RFC 2104) over SHA-1 digest contexts. The digest is fetched once and
 * the keyed inner and outer states are computed once per check and copied for each
 * URL variant: EVP_MAC_fetch() and the EVP_MAC context (which fetches its digest
 * again on every init) cost many times the MAC of a webhook's few hundred bytes.
 */
#define HMAC_BLOCK 64

static EVP_MD *sha1_alg;
static pthread_once_t sha1_once = PTHREAD_ONCE_INIT;

static void sha1_fetch(void)
{
    sha1_alg = EVP_MD_fetch(NULL, "SHA1", NULL);
}

typedef struct hmac {
    EVP_MD_CTX *inner; /* keyed inner state, then the message */
    EVP_MD_CTX *outer; /* keyed outer state */
} hmac_t;

static void hmac_free(hmac_t *h)
{
    EVP_MD_CTX_free(h->inner);
    EVP_MD_CTX_free(h->outer);
    h->inner = h->outer = NULL;
}

/* Keys h with token; returns 0 or TWILIO_SIG_ECRYPTO (h is then freed). */
static int hmac_start(hmac_t *h, const char *token)
{
    unsigned char k[HMAC_BLOCK], pad[HMAC_BLOCK];
    size_t klen = strlen(token);
    unsigned int dlen = 0;
    int ok;

    pthread_once(&sha1_once, sha1_fetch);
    h->inner = EVP_MD_CTX_new();
    h->outer = EVP_MD_CTX_new();
    if (sha1_alg == NULL || h->inner == NULL || h->outer == NULL) {
        hmac_free(h);
        return TWILIO_SIG_ECRYPTO;
    }
    memset(k, 0, sizeof(k));
    if (klen > HMAC_BLOCK)
        ok = EVP_Digest(token, klen, k, &dlen, sha1_alg, NULL);
    else
        ok = (memcpy(k, token, klen), 1);
    for (size_t i = 0; i < HMAC_BLOCK; i++)
        pad[i] = k[i] ^ 0x36;
    ok = ok && EVP_DigestInit_ex(h->inner, sha1_alg, NULL) && EVP_DigestUpdate(h->inner, pad, HMAC_BLOCK);
    for (size_t i = 0; i < HMAC_BLOCK; i++)
        pad[i] = k[i] ^ 0x5c;
    ok = ok && EVP_DigestInit_ex(h->outer, sha1_alg, NULL) && EVP_DigestUpdate(h->outer, pad, HMAC_BLOCK);
    OPENSSL_cleanse(k, sizeof(k));
    OPENSSL_cleanse(pad, sizeof(pad));
    if (!ok) {
        hmac_free(h);
        return TWILIO_SIG_ECRYPTO;
    }
    return 0;
}

/* A copy of keyed h (its inner state as fed so far); returns 0 or TWILIO_SIG_ECRYPTO. */
static int hmac_copy(hmac_t *to, const hmac_t *from)
{
    to->inner = EVP_MD_CTX_new();
    to->outer = EVP_MD_CTX_new();
    if (to->inner == NULL || to->outer == NULL || !EVP_MD_CTX_copy_ex(to->inner, from->inner) ||
        !EVP_MD_CTX_copy_ex(to->outer, from->outer)) {
        hmac_free(to);
        return TWILIO_SIG_ECRYPTO;
    }
    return 0;
}

/*
 * Feeds the rest of the URL (a then b, either may be empty) and the sorted
 * parameters into h and writes the base64 signature. Frees h.
 */
static int hmac_finish(hmac_t *h, const char *a, size_t a_len, const char *b, size_t b_len,
                       const twilio_param_t **sorted, size_t n, char out[TWILIO_SIGNATURE_LEN + 1])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    int rc = TWILIO_SIG_ECRYPTO;

    if (!EVP_DigestUpdate(h->inner, a, a_len) || !EVP_DigestUpdate(h->inner, b, b_len))
        goto done;
    for (size_t i = 0; i < n; i++) {
        if (!EVP_DigestUpdate(h->inner, sorted[i]->name, strlen(sorted[i]->name)) ||
            !EVP_DigestUpdate(h->inner, sorted[i]->value, strlen(sorted[i]->value)))
            goto done;
    }
    if (!EVP_DigestFinal_ex(h->inner, md, &md_len) || md_len != SHA1_LEN ||
        !EVP_DigestUpdate(h->outer, md, md_len) || !EVP_DigestFinal_ex(h->outer, md, &md_len) ||
        md_len != SHA1_LEN)
        goto done;
    EVP_EncodeBlock((unsigned char *)out, md, (int)md_len);
    out[TWILIO_SIGNATURE_LEN] = '\0';
    rc = 0;
done:
    hmac_free(h);
    return rc;
}

static int hmac_sign(const char *token, const char *url, size_t url_len, const twilio_param_t **sorted, size_t n,
                     char out[TWILIO_SIGNATURE_LEN + 1])
{
    hmac_t h;
    int rc = hmac_start(&h, token);

    return rc != 0 ? rc : hmac_finish(&h, url, url_len, "", 0, sorted, n, out);
}

int twilio_signature_compute(const char *auth_token, const char *url, const twilio_param_t *params, size_t nparams,
                             char out[29])
{
    const twilio_param_t **sorted;
    int rc;

    if (auth_token == NULL || url == NULL || out == NULL)
        return TWILIO_SIG_EINVAL;
    rc = check_params(params, nparams);
    if (rc != 0)
        return rc;
    sorted = sort_params(params, &nparams);
    rc = hmac_sign(auth_token, url, strlen(url), sorted, nparams, out);
    free(sorted);
    return rc;
}

/* The port, when present, is [port_start, authority_end) and includes the ':'. */
typedef struct url_port {
    size_t authority_end;
    size_t port_start; /* == authority_end when the URL has no port */
    const char *default_port;
} url_port_t;

static int locate_port(const char *url, url_port_t *up)
{
    const char *sep = strstr(url, "://");
    size_t auth, end, host, i;

    if (sep == NULL || sep == url)
        return TWILIO_SIG_EINVAL;
    auth = (size_t)(sep - url) + 3;
    end = auth + strcspn(url + auth, "/?#");
    if (end == auth)
        return TWILIO_SIG_EINVAL;
    host = auth;
    for (i = auth; i < end; i++)
        if (url[i] == '@')
            host = i + 1;
    up->authority_end = end;
    up->port_start = end;
    i = host;
    if (url[i] == '[') {
        while (i < end && url[i] != ']')
            i++;
    }
    for (; i < end; i++) {
        if (url[i] == ':') {
            up->port_start = i;
            break;
        }
    }
    if ((size_t)(sep - url) == 5 && strncasecmp(url, "https", 5) == 0)
        up->default_port = ":443";
    else if ((size_t)(sep - url) == 4 && strncasecmp(url, "http", 4) == 0)
        up->default_port = ":80";
    else
        up->default_port = NULL;
    return 0;
}

static int equal_ct(const char *expected, const char *given)
{
    if (given == NULL || strlen(given) != TWILIO_SIGNATURE_LEN)
        return 0;
    return CRYPTO_memcmp(expected, given, TWILIO_SIGNATURE_LEN) == 0;
}

/*
 * Tries url as given, then its port variant; returns 0 on the first match. Every
 * variant is computed even after a match would be known, so the time taken does
 * not reveal which one matched. The variants share the URL up to the port: that
 * prefix is fed once and the keyed state copied, so no URL is built.
 */
static int validate_variants(const char *token, const char *url, const twilio_param_t **sorted, size_t n,
                             const char *signature)
{
    char expected[TWILIO_SIGNATURE_LEN + 1];
    url_port_t up;
    size_t len = strlen(url), common;
    const char *alt_a = NULL, *alt_b = "";
    size_t alt_a_len = 0, alt_b_len = 0;
    hmac_t h, alt = {NULL, NULL};
    int rc, match;

    rc = locate_port(url, &up);
    if (rc != 0)
        return rc;
    if (up.port_start < up.authority_end) {
        /* The URL has a port: the variant drops it. */
        common = up.port_start;
        alt_a = url + up.authority_end;
        alt_a_len = len - up.authority_end;
    } else {
        /* The variant adds the scheme's default port (when it has one). */
        common = up.authority_end;
        if (up.default_port != NULL) {
            alt_a = up.default_port;
            alt_a_len = strlen(up.default_port);
            alt_b = url + up.authority_end;
            alt_b_len = len - up.authority_end;
        }
    }
    rc = hmac_start(&h, token);
    if (rc != 0)
        return rc;
    if (!EVP_DigestUpdate(h.inner, url, common) || (alt_a != NULL && hmac_copy(&alt, &h) != 0)) {
        hmac_free(&h);
        return TWILIO_SIG_ECRYPTO;
    }
    rc = hmac_finish(&h, url + common, len - common, "", 0, sorted, n, expected);
    if (rc != 0) {
        hmac_free(&alt);
        return rc;
    }
    match = equal_ct(expected, signature);
    if (alt.inner != NULL) {
        rc = hmac_finish(&alt, alt_a, alt_a_len, alt_b, alt_b_len, sorted, n, expected);
        if (rc != 0)
            return rc;
        match |= equal_ct(expected, signature);
    }
    return match ? 0 : TWILIO_SIG_EMISMATCH;
}

int twilio_signature_validate_form(const char *auth_token, const char *url, const twilio_param_t *params,
                                   size_t nparams, const char *signature)
{
    const twilio_param_t **sorted;
    int rc;

    if (auth_token == NULL || url == NULL)
        return TWILIO_SIG_EINVAL;
    rc = check_params(params, nparams);
    if (rc != 0)
        return rc;
    sorted = sort_params(params, &nparams);
    rc = validate_variants(auth_token, url, sorted, nparams, signature);
    free(sorted);
    return rc;
}

/* Finds bodySHA256 in url's query; returns its value's start and sets *len, or NULL. */
static const char *find_body_hash(const char *url, size_t *len)
{
    const char *q = strchr(url, '?');
    static const char key[] = "bodySHA256=";

    if (q == NULL)
        return NULL;
    q++;
    while (*q != '\0' && *q != '#') {
        size_t plen = strcspn(q, "&#");
        if (plen >= sizeof(key) - 1 && memcmp(q, key, sizeof(key) - 1) == 0) {
            *len = plen - (sizeof(key) - 1);
            return q + sizeof(key) - 1;
        }
        q += plen;
        if (*q == '&')
            q++;
    }
    return NULL;
}

static int body_hash_matches(const char *url, const char *body, size_t body_len)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    char want[SHA256_HEX_LEN], given[SHA256_HEX_LEN];
    size_t glen = 0;
    const char *g = find_body_hash(url, &glen);

    if (g == NULL || glen != SHA256_HEX_LEN)
        return 0;
    if (!EVP_Digest(body_len ? body : "", body_len, md, &md_len, EVP_sha256(), NULL) || md_len != 32)
        return 0;
    for (unsigned i = 0; i < 32; i++) {
        want[2 * i] = hex[md[i] >> 4];
        want[2 * i + 1] = hex[md[i] & 0xf];
    }
    for (size_t i = 0; i < SHA256_HEX_LEN; i++)
        given[i] = (g[i] >= 'A' && g[i] <= 'F') ? (char)(g[i] - 'A' + 'a') : g[i];
    return CRYPTO_memcmp(want, given, SHA256_HEX_LEN) == 0;
}

int twilio_signature_validate_json(const char *auth_token, const char *url, const char *body, size_t body_len,
                                   const char *signature)
{
    int rc;

    if (auth_token == NULL || url == NULL || (body == NULL && body_len > 0))
        return TWILIO_SIG_EINVAL;
    rc = validate_variants(auth_token, url, NULL, 0, signature);
    if (rc != 0)
        return rc;
    return body_hash_matches(url, body, body_len) ? 0 : TWILIO_SIG_EBODYHASH;
}

const char *twilio_signature_strerror(int err)
{
    switch (err) {
    case 0:
        return "ok";
    case TWILIO_SIG_EINVAL:
        return "invalid argument or URL";
    case TWILIO_SIG_EMISMATCH:
        return "signature mismatch";
    case TWILIO_SIG_EBODYHASH:
        return "bodySHA256 missing or does not match the body";
    case TWILIO_SIG_ECRYPTO:
        return "crypto library failure";
    default:
        return "unknown signature error";
    }
}
