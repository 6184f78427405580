/* cmd_pull.c - `mixel pull hf://OWNER/REPO/FILE.gguf`: downloads a model into the folder mixel's
 * discovery reads (net/pull.h does the work), with a progress bar on a terminal and plain lines
 * otherwise; Ctrl-C stops it with a resumable .partial. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cmd.h"
#include "cli/opts.h"
#include "core/base/text.h"
#include "net/pull.h"

static void pull_usage(FILE *f) {
    fprintf(f,
            "usage: mixel pull hf://OWNER/REPO/PATH/FILE.gguf [--dir FOLDER] [--endpoint URL]\n"
            "       mixel pull hf://OWNER/REPO:QUANT   (the repo's one .gguf of that quant)\n"
            "       mixel pull hf://OWNER/REPO         (the repo's one model file)\n"
            "\n"
            "Downloads a GGUF model or an SD checkpoint (.safetensors) from the Hugging Face hub\n"
            "into FOLDER/FILE.partial, verifies its SHA-256 against the hub's (LFS), then moves\n"
            "it into place. Run the same command again after an interruption (Ctrl-C, a dropped\n"
            "connection) to resume. A different file already there is never overwritten.\n"
            "  --dir FOLDER      where the file goes (default: ~/models, which discovery\n"
            "                    searches; .safetensors: A1111's models/Stable-diffusion folder\n"
            "                    when ~/stable-diffusion-webui exists)\n"
            "  --endpoint URL    the hub (default: $HF_ENDPOINT, else %s)\n"
            "  --retries N       tries again after a connection error, N times (default 4;\n"
            "                    waits 1, 2, 4, 8 s)\n"
            "  -q, --quiet       no progress, only errors and the file's path\n"
            "Environment: HF_TOKEN (sent as a bearer token, for private and gated repos),\n"
            "HF_ENDPOINT. Prints the file's path on stdout when done.\n",
            MX_PULL_ENDPOINT);
}


/* The display's state: a bar redrawn in place on a terminal, else a line every 10%. */
struct display {
    bool tty;            /* stderr is a terminal */
    bool quiet;
    bool bar_shown;      /* a bar is on the current line (a note first ends it) */
    int last_decile;     /* the last 10% step printed (plain lines) */
};

/* "4m12s", "1h03m", "12s". */
static void fmt_eta(double s, char *buf, size_t size) {
    if (s < 0)
        snprintf(buf, size, "--");
    else if (s < 60)
        snprintf(buf, size, "%.0fs", s);
    else if (s < 3600)
        snprintf(buf, size, "%dm%02ds", (int)s / 60, (int)s % 60);
    else
        snprintf(buf, size, "%dh%02dm", (int)s / 3600, (int)s % 3600 / 60);
}

static int on_progress(void *ud, const struct mx_pull_progress *p) {
    struct display *d = ud;
    if (mx_cli_interrupted(NULL))
        return 1;
    if (d->quiet || !p->receiving)
        return 0;
    char done[32], total[32], rate[32], eta[32];
    mx_fmt_bytes((double)p->done, done, sizeof done);
    mx_fmt_bytes((double)p->total, total, sizeof total);
    mx_fmt_bytes(p->rate, rate, sizeof rate);
    fmt_eta(p->eta_s, eta, sizeof eta);
    double frac = p->total ? (double)p->done / (double)p->total : 0;
    if (d->tty) {
        char bar[32 * 3 + 1];
        mx_text_bar(frac, 24, bar, sizeof bar);
        fprintf(stderr, "\r%s %s %3.0f%%  %s / %s  %s/s  ETA %s\033[K", mx_safe(p->file), bar,
                frac * 100, done, p->total ? total : "?", rate, eta);
        d->bar_shown = true;
    } else {
        int decile = (int)(frac * 10);
        if (decile > d->last_decile || (p->total && p->done == p->total && d->last_decile < 10)) {
            d->last_decile = decile;
            fprintf(stderr, "%s: %3.0f%%  %s / %s  %s/s  ETA %s\n", mx_safe(p->file),
                    frac * 100, done, p->total ? total : "?", rate, eta);
        }
    }
    return 0;
}

static void on_note(void *ud, const char *msg) {
    struct display *d = ud;
    if (d->bar_shown) {
        fputc('\n', stderr);
        d->bar_shown = false;
    }
    if (!d->quiet)
        fprintf(stderr, "mixel pull: %s\n", mx_safe(msg));
}

int mx_cmd_pull(int argc, char **argv) {
    struct mx_pull_opts o = {.retries = -1};
    struct display d = {.tty = isatty(STDERR_FILENO) == 1, .last_decile = -1};
    const char *ref = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *eq = strchr(a, '=');
        size_t name_len = a[0] == '-' && eq ? (size_t)(eq - a) : strlen(a);
        const char *v = eq && a[0] == '-' ? eq + 1 : NULL;
#define OPT(s) (strlen(s) == name_len && !strncmp(a, s, name_len))
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            pull_usage(stdout);
            return 0;
        } else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
            d.quiet = true;
        } else if (OPT("--dir") || OPT("--endpoint") || OPT("--retries")) {
            if (!v && i + 1 < argc)
                v = argv[++i];
            if (!v || !v[0]) {
                mx_cli_err("pull", "%.*s needs a value (see mixel pull --help)", (int)name_len,
                           a);
                return 2;
            }
            if (OPT("--dir")) {
                o.dir = v;
            } else if (OPT("--endpoint")) {
                o.endpoint = v;
            } else {
                char *end;
                long n = strtol(v, &end, 10);
                if (*end || n < 0 || n > 20) {
                    mx_cli_err("pull", "--retries: '%s' is not a whole number from 0 to 20", v);
                    return 2;
                }
                o.retries = (int)n;
            }
        } else if (a[0] == '-' && a[1]) {
            mx_cli_err("pull", "unknown option '%s' (see mixel pull --help)", a);
            return 2;
        } else if (!ref) {
            ref = a;
        } else {
            mx_cli_err("pull", "one model at a time ('%s' and '%s')", ref, a);
            return 2;
        }
#undef OPT
    }
    if (!ref) {
        pull_usage(stderr);
        return 2;
    }
    o.progress = on_progress;
    o.note = on_note;
    o.ud = &d;
    mx_cli_interrupt_catch(true); /* a blocked read returns and curl checks us */
    char *path = NULL;
    bool already = false;
    struct mx_err err = {0};
    int rc = mx_pull(ref, &o, &path, &already, &err);
    mx_cli_interrupt_restore();
    if (d.bar_shown)
        fputc('\n', stderr);
    if (rc != 0) {
        mx_cli_err("pull", "%s", mx_err_msg(&err, rc));
        return rc == MX_ECANCELED ? 130 : 1;
    }
    if (already && !d.quiet)
        fprintf(stderr, "mixel pull: already there: %s\n", mx_safe(path));
    printf("%s\n", mx_safe(path));
    free(path);
    return 0;
}
