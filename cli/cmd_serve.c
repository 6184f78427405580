/* cmd_serve.c - `mixel serve`: the local engines behind an OpenAI-compatible and an A1111 HTTP
 * API (net/server.h), for other tools and for `mixel chat --remote` on another machine.
 *
 * Opens the GGUF model as the chat's engine (the same open path, template and generate loop as
 * the TUI) and, with -d, keeps an SD engine for /sdapi/v1/txt2img; binds 127.0.0.1:8080 unless
 * told otherwise (another address only with an API key), prints where it listens, logs one line
 * per request to stderr, and stops cleanly on SIGINT/SIGTERM (queued requests get 503, the
 * running one is cancelled). Exit status: 0 after a signal, 1 runtime error, 2 usage.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cmd.h"
#include "cli/opts.h"
#include "core/base/text.h"
#include "app/engine_llm.h"
#include "app/image_job.h"
#include "net/server.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: mixel serve -m MODEL [-d SD] [--host H] [--port P] [--api-key KEY] [options]\n"
            "Serves the model over HTTP: OpenAI's POST /v1/chat/completions (stream or not),\n"
            "POST /v1/completions, GET /v1/models, GET /health; with -d, AUTOMATIC1111's\n"
            "POST /sdapi/v1/txt2img and GET /sdapi/v1/progress. One request runs at a time;\n"
            "the others wait in a queue. Ctrl-C (SIGINT) or SIGTERM stops it.\n"
            "  -d, --sd-model SD         a Stable Diffusion checkpoint for /sdapi/v1/txt2img\n"
            "  --host H                  numeric address to listen on (default 127.0.0.1); any\n"
            "                            non-loopback address needs an API key\n"
            "  --port P                  TCP port (default 8080; 0: a free one, printed)\n"
            "  --api-key KEY             require \"Authorization: Bearer KEY\" (default: the\n"
            "                            MIXEL_API_KEY environment variable; /health stays open)\n"
            "  --queue N                 requests that may wait behind the running one\n"
            "                            (default 8; more: 503 with Retry-After)\n"
            "  --max-body BYTES          largest request body (default 8 MiB; more: 413)\n"
            "  --alias NAME              the model id /v1/models shows (default: the -m name)\n"
            "  --chat-template NAME      override the model's chat template\n"
            "Without --seed every request without \"seed\" gets a fresh one.\n");
    mx_cli_common_help(f, MX_CLI_RUN);
}

/* The server's log lines, on stderr, made inert (request paths come from the network). Called
 * from the server's threads one at a time. */
static void log_line(void *ud, const char *line) {
    (void)ud;
    char safe[MX_SANITIZE_MAX(512)];
    size_t n = strlen(line);
    mx_text_sanitize(line, n < 512 ? n : 512, safe, false);
    fprintf(stderr, "mixel serve: %s\n", safe);
}

int mx_cmd_serve(int argc, char **argv) {
    struct mx_cli_opts o;
    mx_cli_opts_init(&o);
    o.s.ctx_shift = false; /* as in the chat: a full context ends the answer ("length") */
    const char *sd = NULL, *host = "127.0.0.1", *key = NULL, *alias = NULL, *tmpl = NULL;
    long long port = 8080, queue = 8, max_body = MX_SERVER_MAX_BODY;
    const struct mx_cli_extra extra[] = {
        {"-d", "--sd-model", MX_X_STR, &sd, 0, 0},
        {NULL, "--host", MX_X_STR, &host, 0, 0},
        {NULL, "--port", MX_X_INT, &port, 0, 65535},
        {NULL, "--api-key", MX_X_STR, &key, 0, 0},
        {NULL, "--queue", MX_X_INT, &queue, 1, 1024},
        {NULL, "--max-body", MX_X_INT, &max_body, 1024, 1LL << 30},
        {NULL, "--alias", MX_X_STR, &alias, 0, 0},
        {NULL, "--chat-template", MX_X_STR, &tmpl, 0, 0},
    };
    int pr = mx_cli_parse("serve", MX_CLI_RUN, argc, argv, &o, extra,
                          sizeof extra / sizeof extra[0], usage);
    if (pr != 0)
        return pr > 0 ? 0 : 2;
    if (!o.model) {
        mx_cli_err("serve", "need -m MODEL (see mixel serve --help)");
        return 2;
    }
    if (!key || !key[0])
        key = getenv("MIXEL_API_KEY");
    if (!mx_server_host_is_loopback(host) && !(key && key[0])) {
        mx_cli_err("serve", "--host %s is not a loopback address: anyone who can reach it could "
                   "use the model, so an API key is required (--api-key KEY or MIXEL_API_KEY)",
                   host);
        return 2;
    }
    /* the id clients name: the -m argument as typed when it is a name, else the file's name */
    char id[256];
    const char *slash = strrchr(o.model, '/');
    snprintf(id, sizeof id, "%s", alias ? alias : slash ? slash + 1 : o.model);
    if (mx_cli_resolve_model("serve", &o))
        return 1;
    char *model_path = strdup(o.model); /* the resolver's copy is static */
    char *sd_path = NULL;
    if (sd) {
        const char *p = mx_cli_sd_model_path("serve", sd);
        if (!p || !(sd_path = strdup(p))) {
            free(model_path);
            return 1;
        }
    }
    if (!model_path) {
        free(sd_path);
        return 1;
    }
    mx_cli_log_init(&o);

    int status = 1, rc;
    struct mx_err err = {0};
    struct mx_engine *e = NULL;
    struct mx_sd_engine *se = NULL;
    struct mx_server *srv = NULL;
    bool have_dir = false;
    const char *tmp = getenv("TMPDIR");
    char img_tmpl[4096];
    snprintf(img_tmpl, sizeof img_tmpl, "%s/mixel-serve-XXXXXX", tmp && tmp[0] ? tmp : "/tmp");

    e = mx_engine_llm_new(model_path, &o.s, tmpl, &err);
    if (!e) {
        mx_cli_err("serve", "%s", mx_err_msg(&err, err.code));
        goto done;
    }
    const char *warn = mx_engine_llm_warning(e);
    if (warn && warn[0])
        mx_cli_err("serve", "%s", warn);
    if (sd_path) {
        if (mx_sd_engine_new(&se) != 0) {
            mx_cli_err("serve", "out of memory");
            goto done;
        }
        if (!mkdtemp(img_tmpl)) {
            mx_cli_err("serve", "%s: cannot make a folder for the images: %s", img_tmpl,
                       strerror(errno));
            goto done;
        }
        have_dir = true;
    }

    /* the signals are taken by sigwait below: every thread started from here on blocks them */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    struct mx_server_opts so = {
        .host = host, .port = (int)port, .api_key = key, .queue = (int)queue,
        .max_body = (size_t)max_body, .llm = e, .model_id = id, .model_path = model_path,
        .settings = o.s, .seed_set = o.seed_set, .sd = se, .sd_path = sd_path,
        .image_dir = have_dir ? img_tmpl : NULL, .log = log_line,
    };
    if ((rc = mx_server_start(&srv, &so, &err)) != 0) {
        mx_cli_err("serve", "%s", mx_err_msg(&err, rc));
        goto done;
    }
    fprintf(stderr, "mixel serve: %s (%s, %s, context %d) as '%s'%s%s\n", mx_safe(e->name),
            e->device, mx_engine_llm_template(e), e->n_ctx, mx_safe(id),
            sd_path ? ", images from " : "", sd_path ? mx_safe(sd_path) : "");
    fprintf(stderr, "mixel serve: listening on http://%s%s%s:%d%s\n", strchr(host, ':') ? "[" : "",
            host, strchr(host, ':') ? "]" : "", mx_server_port(srv),
            key && key[0] ? " (API key required)" : "");
    sigdelset(&sigs, SIGPIPE);
    int sig = 0;
    sigwait(&sigs, &sig);
    fprintf(stderr, "mixel serve: %s: stopping\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
    status = 0;
done:
    mx_server_stop(srv);
    mx_sd_engine_free(se);
    if (e)
        e->free(e);
    if (have_dir)
        rmdir(img_tmpl);
    free(model_path);
    free(sd_path);
    return status;
}
