/*
 * herald org: tenants and their credentials. `org create` makes an org, optionally
 * with Twilio credentials (secrets sealed with AES-256-GCM under HERALD_MASTER_KEY;
 * refused without it) and receiving numbers, and prints its id and a first API key.
 * `org key` issues another key. Keys are "hk_" + 32 base62 characters; only their
 * prefix and SHA-256 are stored, so a key is shown exactly once. `org texts` shows or
 * sets the org's answers to the carrier keywords HELP, STOP (and its family) and START
 * (and its family), which the webhook and `herald rules test` send instead of the
 * defaults in routing/routing.h.
 */
#include "app/cli.h"
#include "app/commands.h"
#include "common/crypto.h"
#include "compliance/phone.h"
#include "compliance/segments.h"
#include "routing/routing.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_NUMBERS 64
/* An org's carrier text may be at most this many SMS segments (Twilio takes 10 at most for one body). */
#define TEXT_MAX_SEGMENTS 10

static int usage(void)
{
    fprintf(stderr, "usage: herald org create NAME [--account-sid AC... --auth-token T | --api-key SK... "
                    "--api-secret S] [--number E164 ...]\n"
                    "       herald org key ORG_ID [--name NAME]\n"
                    "       herald org number ORG_ID E164\n"
                    "       herald org texts ORG_ID [--help TEXT] [--opt-out TEXT] [--opt-in TEXT]\n"
                    "                               [--default help|opt-out|opt-in|all]\n");
    return EXIT_USAGE;
}

/* An org id as the commands take it: 1 to 18 digits. */
static int is_org_id(const char *s)
{
    size_t n = strlen(s);
    return n > 0 && n <= 18 && strspn(s, "0123456789") == n;
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
    if (token && !(token_hex = crypto_seal_hex(mkey, token, strlen(token))))
        goto out_nosession;
    if (api_secret && !(secret_hex = crypto_seal_hex(mkey, api_secret, strlen(api_secret))))
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
                 " twilio_api_secret_enc) VALUES ($1, $2, decode($3, 'hex'), $4, decode($5, 'hex')) RETURNING id",
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

    if (argc < 3 || !is_org_id(argv[2]))
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

    if (argc != 4 || !is_org_id(argv[2]))
        return usage();
    if (cli_session_open(&s) != 0)
        return 1;
    rc = cli_session_org(&s, argv[2]) != 0 ? 1 : add_number(&s, argv[2], argv[3]);
    cli_session_close(&s);
    return rc;
}

/* ---- org texts ---- */

/* The org's answers to carrier keywords, in column order: option and --default name, default text. */
static const struct org_text {
    const char *name;
    const char *fallback;
} org_texts[3] = {
    {"help", ROUTING_DEFAULT_HELP_TEXT},
    {"opt-out", ROUTING_DEFAULT_OPT_OUT_TEXT},
    {"opt-in", ROUTING_DEFAULT_OPT_IN_TEXT},
};

/*
 * Whether v may be sent as the org's NAME text: well-formed UTF-8, something besides
 * white space, no control characters but line breaks (a carrier or handset may drop or
 * show them), at most TEXT_MAX_SEGMENTS segments as Twilio counts them (the webhook
 * sends nothing for a reply over 1600 characters). Returns 0, or -1 after saying why.
 */
static int check_text(const char *name, const char *v)
{
    size_t len = strlen(v), blank = strspn(v, " \t\r\n");
    const unsigned char *u = (const unsigned char *)v;
    sms_info_t info;

    if (sms_analyze(v, len, 0, &info) != 0) {
        fprintf(stderr, "herald: org texts: --%s: not valid UTF-8\n", name);
        return -1;
    }
    if (blank == len) {
        fprintf(stderr, "herald: org texts: --%s: empty text (to go back to the default: --default %s)\n",
                name, name);
        return -1;
    }
    for (size_t i = 0; i < len; i++) {
        /* C0 controls but CR and LF, DEL, and C1 controls (U+0080..U+009F, C2 80..C2 9F in UTF-8). */
        if ((u[i] < 0x20 && u[i] != '\n' && u[i] != '\r') || u[i] == 0x7f ||
            (u[i] == 0xc2 && i + 1 < len && u[i + 1] >= 0x80 && u[i + 1] <= 0x9f)) {
            fprintf(stderr,
                    "herald: org texts: --%s: control character at byte %zu (only line breaks are allowed)\n",
                    name, i);
            return -1;
        }
    }
    if (info.segments > TEXT_MAX_SEGMENTS) {
        fprintf(stderr,
                "herald: org texts: --%s: %u SMS segments (%s, %zu characters); at most %d are allowed\n",
                name, info.segments, sms_encoding_name(info.encoding), info.characters, TEXT_MAX_SEGMENTS);
        return -1;
    }
    return 0;
}

/* Prints s with backslash, tab, CR and LF escaped, so that a text stays on its line. */
static void print_escaped(const char *s)
{
    for (; *s; s++) {
        if (*s == '\\')
            fputs("\\\\", stdout);
        else if (*s == '\n')
            fputs("\\n", stdout);
        else if (*s == '\r')
            fputs("\\r", stdout);
        else if (*s == '\t')
            fputs("\\t", stdout);
        else
            putchar(*s);
    }
}

/*
 * herald org texts ORG_ID [--help TEXT] [--opt-out TEXT] [--opt-in TEXT] [--default NAME|all]
 * Sets the texts given, puts those named by --default back to the default (NULL), and
 * prints all three as "NAME<TAB>custom|default<TAB>TEXT". A NULL or empty column
 * prints as the default, which the webhook and `rules test` both answer for it (the
 * routing engine's org_text()); this command only ever writes NULL or a text.
 */
static int org_texts_cmd(int argc, char **argv)
{
    /* Per text: 0 keep, 1 set to val[i], 2 back to the default. */
    int op[3] = {0, 0, 0};
    const char *val[3] = {NULL, NULL, NULL};
    const char *p[7];
    const char *err;
    cli_session_t s;
    PGresult *r;
    int rc = 1, changes = 0;

    if (argc < 3 || !is_org_id(argv[2]))
        return usage();
    for (int i = 3; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int k = -1, all = 0, reset;

        if (strncmp(a, "--", 2) != 0 || !v)
            return usage();
        reset = strcmp(a, "--default") == 0;
        if (reset) {
            all = strcmp(v, "all") == 0;
            for (int j = 0; j < 3; j++)
                if (strcmp(v, org_texts[j].name) == 0)
                    k = j;
            if (k < 0 && !all) {
                fprintf(stderr, "herald: org texts: --default takes help, opt-out, opt-in or all, not '%s'\n",
                        v);
                return EXIT_USAGE;
            }
        } else {
            for (int j = 0; j < 3; j++)
                if (strcmp(a + 2, org_texts[j].name) == 0)
                    k = j;
            if (k < 0)
                return usage();
        }
        for (int j = 0; j < 3; j++) {
            if (j != k && !all)
                continue;
            if (op[j] != 0) {
                fprintf(stderr, "herald: org texts: the %s text is given more than once\n",
                        org_texts[j].name);
                return EXIT_USAGE;
            }
            op[j] = reset ? 2 : 1;
            val[j] = reset ? NULL : v;
        }
        i++;
    }
    for (int j = 0; j < 3; j++) {
        if (op[j] == 1 && check_text(org_texts[j].name, val[j]) != 0)
            return EXIT_USAGE;
        changes += op[j] != 0;
    }
    if (cli_session_open(&s) != 0)
        return 1;
    if (cli_session_org(&s, argv[2]) != 0)
        goto out;
    p[0] = argv[2];
    for (int j = 0; j < 3; j++) {
        p[1 + 2 * j] = op[j] ? "t" : "f";
        p[2 + 2 * j] = val[j];
    }
    if (changes)
        rc = cli_exec(&s,
                      "UPDATE orgs SET help_text = CASE WHEN $2::boolean THEN $3 ELSE help_text END,"
                      " opt_out_text = CASE WHEN $4::boolean THEN $5 ELSE opt_out_text END,"
                      " opt_in_text = CASE WHEN $6::boolean THEN $7 ELSE opt_in_text END"
                      " WHERE id = $1::bigint RETURNING help_text, opt_out_text, opt_in_text",
                      7, p, &r, &err);
    else
        rc = cli_exec(&s, "SELECT help_text, opt_out_text, opt_in_text FROM orgs WHERE id = $1::bigint", 1, p,
                      &r, &err);
    if (rc != 0) {
        fprintf(stderr, "herald: org texts: %s\n", err);
        rc = 1;
        goto out;
    }
    if (PQntuples(r) != 1) {
        fprintf(stderr, "herald: org %s does not exist\n", argv[2]);
        rc = 1;
    } else {
        for (int j = 0; j < 3; j++) {
            int custom = !PQgetisnull(r, 0, j) && *PQgetvalue(r, 0, j);
            printf("%s\t%s\t", org_texts[j].name, custom ? "custom" : "default");
            print_escaped(custom ? PQgetvalue(r, 0, j) : org_texts[j].fallback);
            putchar('\n');
        }
    }
    PQclear(r);
out:
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
    if (strcmp(argv[1], "texts") == 0)
        return org_texts_cmd(argc, argv);
    return usage();
}
