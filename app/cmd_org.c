/*
 * herald org: tenants and their credentials. `org create` makes an org, optionally
 * with Twilio credentials (secrets sealed with AES-256-GCM under HERALD_MASTER_KEY;
 * refused without it) and receiving numbers, and prints its id and a first API key.
 * `org key` issues another key. Keys are "hk_" + 32 base62 characters; only their
 * prefix and SHA-256 are stored, so a key is shown exactly once.
 */
#include "app/cli.h"
#include "app/commands.h"
#include "common/crypto.h"
#include "compliance/phone.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_NUMBERS 64

static int usage(void)
{
    fprintf(stderr, "usage: herald org create NAME [--account-sid AC... --auth-token T | --api-key SK... "
                    "--api-secret S] [--number E164 ...]\n"
                    "       herald org key ORG_ID [--name NAME]\n"
                    "       herald org number ORG_ID E164\n");
    return EXIT_USAGE;
}

static int load_master_key(unsigned char key[CRYPTO_KEY_LEN])
{
    const char *v = getenv("HERALD_MASTER_KEY");
    if (!v || !*v) {
        fprintf(stderr, "herald: HERALD_MASTER_KEY is not set: refusing to store a provider secret "
                        "(set it to 32 random bytes as 64 hex digits or base64)\n");
        return -1;
    }
    if (crypto_key_parse(v, key) != 0) {
        fprintf(stderr, "herald: HERALD_MASTER_KEY: expected 32 bytes as 64 hex digits or base64\n");
        return -1;
    }
    return 0;
}

/* Seals secret and writes it as a bytea hex literal ("\x...") into a new string. */
static char *seal_hex(const unsigned char key[CRYPTO_KEY_LEN], const char *secret)
{
    size_t len = strlen(secret), slen = len + CRYPTO_SEAL_OVERHEAD;
    unsigned char *sealed = malloc(slen);
    char *hex = malloc(2 * slen + 3);

    if (!sealed || !hex || crypto_seal(key, secret, len, sealed) != 0) {
        free(sealed);
        free(hex);
        return NULL;
    }
    hex[0] = '\\';
    hex[1] = 'x';
    crypto_hex(sealed, slen, hex + 2);
    free(sealed);
    return hex;
}

/* Creates a key for org and prints it. Returns 0 or 1. */
static int issue_key(cli_session_t *s, const char *org, const char *name)
{
    char key[3 + 32 + 1] = "hk_";
    unsigned char hash[32];
    char hashhex[2 + 65] = "\\x";
    char prefix[12];
    const char *p[4];
    const char *err;
    PGresult *r;

    if (crypto_random_base62(key + 3, 32) != 0) {
        fprintf(stderr, "herald: no random bytes\n");
        return 1;
    }
    crypto_sha256(key, strlen(key), hash);
    crypto_hex(hash, 32, hashhex + 2);
    snprintf(prefix, sizeof(prefix), "%.10s", key);
    p[0] = org;
    p[1] = prefix;
    p[2] = hashhex;
    p[3] = name;
    if (cli_exec(s, "INSERT INTO api_keys (org_id, prefix, key_hash, name) VALUES ($1, $2, $3::bytea, $4)", 4, p, &r,
                 &err) != 0) {
        fprintf(stderr, "herald: api key: %s\n", err);
        return 1;
    }
    PQclear(r);
    printf("api_key %s\n", key);
    return 0;
}

static int add_number(cli_session_t *s, const char *org, const char *raw)
{
    phone_result_t ph;
    const char *p[2];
    const char *err;
    PGresult *r;

    if (phone_normalize(raw, strlen(raw), NULL, &ph) != PHONE_OK) {
        fprintf(stderr, "herald: --number %s: not an E.164 number\n", raw);
        return 1;
    }
    p[0] = org;
    p[1] = ph.e164;
    if (cli_exec(s, "INSERT INTO numbers (org_id, e164) VALUES ($1, $2)", 2, p, &r, &err) != 0) {
        fprintf(stderr, "herald: number %s: %s\n", ph.e164,
                strstr(err, "duplicate") ? "already belongs to an org" : err);
        return 1;
    }
    PQclear(r);
    return 0;
}

static int org_create(int argc, char **argv)
{
    const char *name = NULL, *account = NULL, *token = NULL, *api_key = NULL, *api_secret = NULL;
    const char *numbers[MAX_NUMBERS];
    size_t n_numbers = 0;
    unsigned char mkey[CRYPTO_KEY_LEN];
    char *token_hex = NULL, *secret_hex = NULL;
    cli_session_t s;
    const char *p[5];
    const char *err;
    PGresult *r = NULL;
    char org[24];
    int rc = 1;

    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (a[0] != '-') {
            if (name)
                return usage();
            name = a;
            continue;
        }
        if (!v)
            return usage();
        if (strcmp(a, "--account-sid") == 0)
            account = v;
        else if (strcmp(a, "--auth-token") == 0)
            token = v;
        else if (strcmp(a, "--api-key") == 0)
            api_key = v;
        else if (strcmp(a, "--api-secret") == 0)
            api_secret = v;
        else if (strcmp(a, "--number") == 0 && n_numbers < MAX_NUMBERS)
            numbers[n_numbers++] = v;
        else
            return usage();
        i++;
    }
    if (!name || !*name || strlen(name) > 200 || (!!api_key != !!api_secret) || (token && !account))
        return usage();
    if ((token || api_secret) && load_master_key(mkey) != 0)
        return 1;
    if (token && !(token_hex = seal_hex(mkey, token)))
        goto out_nosession;
    if (api_secret && !(secret_hex = seal_hex(mkey, api_secret)))
        goto out_nosession;
    if (cli_session_open(&s) != 0)
        goto out_nosession;
    p[0] = name;
    p[1] = account;
    p[2] = token_hex;
    p[3] = api_key;
    p[4] = secret_hex;
    if (cli_exec(&s,
                 "INSERT INTO orgs (name, twilio_account_sid, twilio_auth_token_enc, twilio_api_key_sid,"
                 " twilio_api_secret_enc) VALUES ($1, $2, $3::bytea, $4, $5::bytea) RETURNING id",
                 5, p, &r, &err) != 0) {
        fprintf(stderr, "herald: org: %s\n", strstr(err, "check") ? "invalid Account SID or API key SID" : err);
        goto out;
    }
    snprintf(org, sizeof(org), "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    for (size_t i = 0; i < n_numbers; i++)
        if (add_number(&s, org, numbers[i]) != 0)
            goto out;
    printf("org_id %s\n", org);
    rc = issue_key(&s, org, "initial");
out:
    cli_session_close(&s);
out_nosession:
    if (token_hex)
        memset(token_hex, 0, strlen(token_hex));
    free(token_hex);
    free(secret_hex);
    return rc;
}

static int org_key(int argc, char **argv)
{
    cli_session_t s;
    const char *name = "cli";
    int rc;

    if (argc < 3 || strspn(argv[2], "0123456789") != strlen(argv[2]))
        return usage();
    if (argc == 5 && strcmp(argv[3], "--name") == 0)
        name = argv[4];
    else if (argc != 3)
        return usage();
    if (cli_session_open(&s) != 0)
        return 1;
    rc = cli_session_org(&s, argv[2]) != 0 ? 1 : issue_key(&s, argv[2], name);
    cli_session_close(&s);
    return rc;
}

static int org_number(int argc, char **argv)
{
    cli_session_t s;
    int rc;

    if (argc != 4 || strspn(argv[2], "0123456789") != strlen(argv[2]))
        return usage();
    if (cli_session_open(&s) != 0)
        return 1;
    rc = cli_session_org(&s, argv[2]) != 0 ? 1 : add_number(&s, argv[2], argv[3]);
    cli_session_close(&s);
    return rc;
}

int cmd_org(int argc, char **argv)
{
    if (argc < 2)
        return usage();
    if (strcmp(argv[1], "create") == 0)
        return org_create(argc, argv);
    if (strcmp(argv[1], "key") == 0)
        return org_key(argc, argv);
    if (strcmp(argv[1], "number") == 0)
        return org_number(argc, argv);
    return usage();
}
