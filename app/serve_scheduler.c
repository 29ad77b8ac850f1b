/*
 * The scheduler inside `herald serve`: a placeholder that attaches nothing. The
 * scheduler change (issue 5) replaces this file with the campaign runner, the
 * status-callback endpoint and the campaign control endpoints.
 */
#include "app/serve.h"

int serve_scheduler_attach(serve_ctx_t *ctx)
{
    (void)ctx;
    return 0;
}

void serve_scheduler_detach(serve_ctx_t *ctx, void (*done)(void *arg), void *arg)
{
    (void)ctx;
    if (done)
        done(arg);
}
