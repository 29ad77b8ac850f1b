/*
 * X-Twilio-Signature: compute and validate Twilio's request signatures.
 *
 * Twilio signs each webhook with base64(HMAC-SHA1(auth token, data)), where data is
 * the URL exactly as configured (query string kept) followed, for form bodies, by
 * name + value of every POST parameter in byte order of name (a repeated name
 * contributes each distinct value, sorted). JSON bodies are signed with an empty
 * parameter set; the URL then carries bodySHA256=<hex sha256 of the raw body>.
 * Validators accept the URL as given, with the scheme's default port added, or with
 * its port removed, as Twilio's helper libraries do, and compare in constant time.
 * All functions are pure (no I/O, no logging) and safe to call from any thread.
 */
#ifndef HERALD_PROVIDER_SIGNATURE_H
#define HERALD_PROVIDER_SIGNATURE_H
#include <stddef.h>

/* Length of a signature in base64 (20-byte SHA-1 digest), without the NUL. */
#define TWILIO_SIGNATURE_LEN 28

#define TWILIO_SIG_EINVAL (-1)    /* NULL argument or URL without scheme://host */
#define TWILIO_SIG_EMISMATCH (-2) /* signature does not match any URL variant */
#define TWILIO_SIG_EBODYHASH (-3) /* JSON body: bodySHA256 missing or not the body's hash */
#define TWILIO_SIG_ECRYPTO (-4)   /* libcrypto failed */

/* One POST parameter; both strings are borrowed and NUL-terminated. */
typedef struct twilio_param {
    const char *name;
    const char *value;
} twilio_param_t;

/*
 * Computes the signature of url + params with auth_token into out (28 base64
 * characters and a NUL). params may be NULL when nparams is 0; its order does not
 * matter and it is not modified. Returns 0, TWILIO_SIG_EINVAL or TWILIO_SIG_ECRYPTO.
 */
__attribute__((warn_unused_result)) int twilio_signature_compute(const char *auth_token, const char *url,
                                                                 const twilio_param_t *params, size_t nparams,
                                                                 char out[29]);

/*
 * Validates the X-Twilio-Signature header value of a form-encoded request whose
 * decoded POST parameters are params, received on url (the public URL Twilio was
 * given, e.g. HERALD_PUBLIC_URL + path + query). Returns 0 when the signature
 * matches one of the port variants, TWILIO_SIG_EMISMATCH when it does not (also for
 * a NULL or malformed header), or another negative TWILIO_SIG_* code.
 */
__attribute__((warn_unused_result)) int twilio_signature_validate_form(const char *auth_token, const char *url,
                                                                       const twilio_param_t *params,
                                                                       size_t nparams, const char *signature);

/*
 * Validates a request with a JSON (or any non-form) body: the signature must match
 * url with an empty parameter set, and url's query must carry bodySHA256 equal to
 * the lowercase or uppercase hex SHA-256 of body. Returns 0 when both hold,
 * TWILIO_SIG_EMISMATCH, TWILIO_SIG_EBODYHASH, or another negative TWILIO_SIG_* code.
 */
__attribute__((warn_unused_result)) int twilio_signature_validate_json(const char *auth_token, const char *url,
                                                                       const char *body, size_t body_len,
                                                                       const char *signature);

/* Returns a static description of a TWILIO_SIG_* code. */
const char *twilio_signature_strerror(int err);

#endif
