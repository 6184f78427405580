/* opts.c - the LLM commands' shared options, logger, model names and output sanitiser (see
 * opts.h). One table drives parsing, range checks and help, so run, chat, bench and logits
 * cannot disagree about what -c or --temp accepts. */
#include "cli/opts.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/base/log.h"
#include "core/base/quant.h"
#include "core/base/readfile.h"
#include "core/base/text.h"
#include "core/base/util.h"
#include "core/diffusion/pipeline.h"
#include "core/llm/json_schema.h"
#include "kernels/backend.h"
#include "kernels/devices.h"
#include "app/discover.h"

enum kind {
    K_STR,      /* const char * */
    K_INT,      /* int in [lo, hi] */
    K_FLOAT,    /* float in [lo, hi] (lo excluded when lo_open) */
    K_SEED,     /* uint64_t, any; sets seed_set */
    K_ON,       /* bool set true */
    K_OFF,      /* bool set false */
    K_KV,       /* f32 | f16 | q8_0 -> enum mx_type */
    K_ACT,      /* ggml | f32 -> enum mx_act_mode */
    K_DEVICE,   /* auto or a registry name */
    K_STOP,     /* appended to s.stop */
    K_LORA,     /* FILE[:SCALE] appended to s.lora / s.lora_scale */
};

struct spec {
    const char *shrt, *lng, *alt; /* "-t", "--threads", another long name (or NULL) */
    enum kind kind;
    size_t off;                   /* field in struct mx_cli_opts */
    double lo, hi;                /* range of K_INT / K_FLOAT */
    bool lo_open;                 /* lo itself is not allowed */
    unsigned who;                 /* MX_CLI_* commands that take it */
    const char *arg, *help;       /* value name for the help; help text */
};

#define OFF(f) offsetof(struct mx_cli_opts, f)
#define ALL (MX_CLI_RUN | MX_CLI_CHAT | MX_CLI_BENCH | MX_CLI_LOGITS)
#define GEN (MX_CLI_RUN | MX_CLI_CHAT)
#define LOAD_ONLY (MX_CLI_RUN | MX_CLI_BENCH | MX_CLI_LOGITS)

static const struct spec specs[] = {
    {"-m", "--model", NULL, K_STR, OFF(model), 0, 0, false, ALL, "M",
     "GGUF model: a file, or a name `mixel list` shows (tinystory:latest)"},
    {"-t", "--threads", NULL, K_INT, OFF(s.threads), 1, 1024, false, ALL | MX_CLI_IMAGE, "N",
     "CPU threads (default: physical cores)"},
    {"-c", "--ctx-size", "--ctx", K_INT, OFF(s.n_ctx), 1, 1 << 24, false, ALL, "N",
     "context (KV cache) size in tokens (default: the model's, capped by memory)"},
    {NULL, "--device", NULL, K_DEVICE, OFF(s.device), 0, 0, false, ALL | MX_CLI_IMAGE, "D",
     "auto (default: CUDA when a GPU answers, else CPU), cpu, cuda or cuda:N"},
    {"-ngl", "--gpu-layers", "--n-gpu-layers", K_INT, OFF(s.gpu_layers), 0, 1 << 20, false,
     ALL, "N", "on a GPU: keep N blocks there (the output layer counts as one, as llama.cpp's "
     "-ngl), the rest in host memory on the CPU (default: all)"},
    {NULL, "--cpu-moe", NULL, K_ON, OFF(s.cpu_moe), 0, 0, false, ALL, NULL,
     "on a GPU: keep the expert weights in host memory and run them on the CPU; attention, "
     "router and shared expert stay on the GPU"},
    {NULL, "--n-cpu-moe", NULL, K_INT, OFF(s.n_cpu_moe), 0, 1 << 20, false, ALL, "N",
     "on a GPU: the same for the first N blocks' experts"},
    {NULL, "--kv-type", NULL, K_KV, OFF(s.kv_type), 0, 0, false, LOAD_ONLY, "T",
     "KV cache type: f32, f16 (default), q8_0"},
    {NULL, "--no-mmap", NULL, K_ON, OFF(s.no_mmap), 0, 0, false, ALL, NULL,
     "read the weights into memory instead of mapping the file"},
    {NULL, "--mlock", NULL, K_ON, OFF(s.mlock), 0, 0, false, ALL, NULL,
     "lock the weights in RAM (a failure is a warning naming RLIMIT_MEMLOCK)"},
    {NULL, "--no-mem-check", NULL, K_ON, OFF(s.no_mem_check), 0, 0, false, ALL, NULL,
     "load even when the model, its KV cache and buffers do not fit the available memory "
     "(swap, zram)"},
    {NULL, "--ubatch", NULL, K_INT, OFF(s.ubatch), 1, 8192, false, LOAD_ONLY, "N",
     "tokens per forward chunk (default 512)"},
    {NULL, "--act", NULL, K_ACT, OFF(s.act_mode), 0, 0, false, LOAD_ONLY, "ggml|f32",
     "activation rounding before quantized matmuls: ggml (default, like llama.cpp) or f32"},
    {"-n", "--n-predict", NULL, K_INT, OFF(s.n_predict), -1, 1 << 24, false, GEN, "N",
     "longest answer in tokens (-1: until the end or a full context)"},
    {NULL, "--temp", NULL, K_FLOAT, OFF(s.sampling.temp), 0, 5, false, GEN, "T",
     "temperature (default 0.8; 0 = greedy)"},
    {NULL, "--top-k", NULL, K_INT, OFF(s.sampling.top_k), 0, 1000000, false, GEN, "K",
     "keep the K likeliest tokens (default 40; 0 = off)"},
    {NULL, "--top-p", NULL, K_FLOAT, OFF(s.sampling.top_p), 0, 1, true, GEN, "P",
     "nucleus mass (default 0.95; 1 = off)"},
    {NULL, "--min-p", NULL, K_FLOAT, OFF(s.sampling.min_p), 0, 1, false, GEN, "P",
     "drop tokens below P x the top one (default 0.05; 0 = off)"},
    {NULL, "--typical", NULL, K_FLOAT, OFF(s.sampling.typical_p), 0, 1, true, GEN, "P",
     "locally typical sampling (default 1 = off)"},
    {NULL, "--repeat-penalty", NULL, K_FLOAT, OFF(s.sampling.repeat_penalty), 0, 10, true, GEN,
     "R", "(default 1 = off)"},
    {NULL, "--repeat-last-n", NULL, K_INT, OFF(s.sampling.penalty_last_n), 0, 1 << 20, false,
     GEN, "N", "window of the penalties (default 64)"},
    {NULL, "--presence-penalty", NULL, K_FLOAT, OFF(s.sampling.presence_penalty), -2, 2, false,
     GEN, "P", "(default 0)"},
    {NULL, "--frequency-penalty", NULL, K_FLOAT, OFF(s.sampling.freq_penalty), -2, 2, false,
     GEN, "F", "(default 0)"},
    {"-s", "--seed", NULL, K_SEED, OFF(s.sampling.seed), 0, 0, false, GEN | MX_CLI_IMAGE, "S",
     "RNG seed; -1: random (run, image: random by default, printed; chat: 0)"},
    {NULL, "--stop", NULL, K_STOP, 0, 0, 0, false, GEN, "STR",
     "stop before this text (up to 8 times)"},
    {NULL, "--grammar", NULL, K_STR, OFF(s.grammar), 0, 0, false, GEN, "FILE",
     "keep the answer inside this GBNF grammar (llama.cpp's .gbnf format; root is the start)"},
    {NULL, "--json-schema", NULL, K_STR, OFF(json_schema), 0, 0, false, GEN, "FILE",
     "keep the answer JSON that validates against this JSON Schema (types, properties, enum, "
     "bounds, formats, pattern, anyOf, allOf, local $ref; other keywords are refused)"},
    {NULL, "--json", NULL, K_ON, OFF(json), 0, 0, false, GEN, NULL,
     "keep the answer one JSON object"},
    {NULL, "--lora", NULL, K_LORA, 0, 0, 0, false, ALL, "FILE[:S]",
     "apply a LoRA adapter GGUF (llama.cpp's convert_lora_to_gguf.py) at scale S (default 1) "
     "on the fly; repeatable (up to 8)"},
    {NULL, "--ignore-eos", NULL, K_ON, OFF(s.ignore_eos), 0, 0, false, MX_CLI_RUN, NULL,
     "do not stop at end-of-generation tokens"},
    {NULL, "--keep", NULL, K_INT, OFF(s.n_keep), 0, 1 << 24, false, MX_CLI_RUN, "N",
     "tokens kept at the start when a full context shifts (default 1: BOS); the older half "
     "of the rest is dropped (not with --session: a chat answer ends at a full context)"},
    {NULL, "--no-context-shift", NULL, K_OFF, OFF(s.ctx_shift), 0, 0, false, MX_CLI_RUN, NULL,
     "stop when the context is full instead"},
    {NULL, "--remote", NULL, K_STR, OFF(remote_url), 0, 0, false, GEN, "URL",
     "answer with an OpenAI-compatible server instead of a local model (vLLM, llama.cpp's "
     "server, ollama, mixel serve), e.g. http://gpu-box:8000/v1; key from $MIXEL_API_KEY, "
     "$OPENAI_API_KEY or the config"},
    {NULL, "--remote-model", NULL, K_STR, OFF(remote_model), 0, 0, false, GEN, "NAME",
     "with --remote: the server's model to use (default: the config's remote.model, else the "
     "first the server lists)"},
    {"-v", "--verbose", NULL, K_ON, OFF(verbose), 0, 0, false, LOAD_ONLY | MX_CLI_IMAGE, NULL,
     "debug messages"},
    {"-q", "--quiet", NULL, K_ON, OFF(quiet), 0, 0, false, LOAD_ONLY | MX_CLI_IMAGE, NULL,
     "warnings only"},
};

void mx_cli_opts_init(struct mx_cli_opts *o) {
    memset(o, 0, sizeof *o);
    mx_gen_settings_default(&o->s);
}

/* "from 0 to 5", "above 0, up to 1" */
static void range_text(const struct spec *p, char *buf, size_t size) {
    if (p->lo_open)
        snprintf(buf, size, "above %.10g, up to %.10g", p->lo, p->hi);
    else
        snprintf(buf, size, "from %.10g to %.10g", p->lo, p->hi);
}

/* " run" for "mixel run: ...", "" for the bare `mixel` (the chat without its name) */
#define SP(cmd) ((cmd)[0] ? " " : ""), (cmd)

static int bad(const char *cmd, const char *opt, const char *val, const char *want) {
    fprintf(stderr, "mixel%s%s: %s: '%s' is not %s (see mixel%s%s --help)\n", SP(cmd), opt,
            mx_safe(val), want, SP(cmd));
    return -1;
}

/* Parses a whole number in [lo, hi] (leading spaces and a sign allowed, nothing after). */
static bool parse_whole(const char *s, long long lo, long long hi, long long *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

static int set(const char *cmd, const struct spec *p, const char *opt, const char *val,
               struct mx_cli_opts *o) {
    char *f = (char *)o + p->off, *end, want[96];
    switch (p->kind) {
    case K_STR:
        *(const char **)f = val;
        return 0;
    case K_INT: {
        range_text(p, want, sizeof want);
        char full[128];
        snprintf(full, sizeof full, "a whole number %s", want);
        long long v;
        if (!parse_whole(val, (long long)p->lo, (long long)p->hi, &v))
            return bad(cmd, opt, val, full);
        *(int *)f = (int)v;
        return 0;
    }
    case K_FLOAT: {
        range_text(p, want, sizeof want);
        char full[128];
        snprintf(full, sizeof full, "a number %s", want);
        errno = 0;
        double v = strtod(val, &end);
        if (errno || end == val || *end || !isfinite(v) || v < p->lo || v > p->hi ||
            (p->lo_open && v <= p->lo))
            return bad(cmd, opt, val, full);
        *(float *)f = (float)v;
        return 0;
    }
    case K_SEED: {
        errno = 0;
        const char *s = val;
        while (*s == ' ')
            s++;
        if (!strcmp(s, "-1")) { /* A1111 and stable-diffusion.cpp: -1 = a random seed */
            o->seed_set = false;
            return 0;
        }
        unsigned long long v = strtoull(val, &end, 0);
        if (errno || end == val || *end || *s == '-')
            return bad(cmd, opt, val, "a whole number from 0 to 18446744073709551615");
        *(uint64_t *)f = (uint64_t)v;
        o->seed_set = true;
        return 0;
    }
    case K_ON:
    case K_OFF:
        *(bool *)f = p->kind == K_ON;
        return 0;
    case K_KV: {
        int t = mx_type_from_name(val);
        if (t != MX_TYPE_F32 && t != MX_TYPE_F16 && t != MX_TYPE_Q8_0)
            return bad(cmd, opt, val, "one of f32, f16, q8_0");
        *(int *)f = t;
        return 0;
    }
    case K_ACT:
        if (!strcmp(val, "ggml"))
            *(int *)f = MX_ACT_GGML;
        else if (!strcmp(val, "f32"))
            *(int *)f = MX_ACT_F32;
        else
            return bad(cmd, opt, val, "ggml or f32");
        return 0;
    case K_DEVICE: {
        char names[128] = "auto";
        bool ok = !strcmp(val, "auto") || !strncmp(val, "cuda:", 5); /* index: checked at open */
        for (int i = 0; i < mx_device_count(); i++) { /* names only: no device probed here */
            ok |= !strcmp(val, mx_device_name(i));
            size_t k = strlen(names);
            snprintf(names + k, sizeof names - k, ", %s", mx_device_name(i));
        }
        if (!ok) {
            char full[160];
            snprintf(full, sizeof full, "a device (%s)", names);
            return bad(cmd, opt, val, full);
        }
        *(const char **)f = val;
        return 0;
    }
    case K_STOP:
        if (o->n_stops == MX_GEN_MAX_STOPS || !val[0]) {
            fprintf(stderr, "mixel%s%s: at most %d non-empty --stop strings\n", SP(cmd),
                    MX_GEN_MAX_STOPS);
            return -1;
        }
        o->s.stop[o->n_stops++] = val;
        o->s.stop[o->n_stops] = NULL;
        return 0;
    case K_LORA: {
        /* the same FILE[:W] reading as mixel image --lora; the path is kept until the process
         * ends (the settings borrow it) */
        char path[4096];
        float w;
        struct mx_err e = {0};
        if (o->s.n_lora == MX_GEN_MAX_LORAS) {
            fprintf(stderr, "mixel%s%s: at most %d --lora adapters\n", SP(cmd), MX_GEN_MAX_LORAS);
            return -1;
        }
        if (mx_sd_lora_arg_parse(val, path, sizeof path, &w, &e) < 0)
            return bad(cmd, opt, val, "FILE[:SCALE] with a scale from -100 to 100");
        /* reachable from a static list so the leak checker sees it held, not lost */
        static char *kept[4 * MX_GEN_MAX_LORAS];
        static int n_kept;
        char *keep = n_kept < (int)MX_ARRAY_LEN(kept) ? strdup(path) : NULL;
        if (keep)
            kept[n_kept++] = keep;
        if (!keep) {
            fprintf(stderr, "mixel%s%s: out of memory\n", SP(cmd));
            return -1;
        }
        o->s.lora[o->s.n_lora] = keep;
        o->s.lora_scale[o->s.n_lora++] = w;
        return 0;
    }
    }
    return -1;
}

int mx_cli_parse_common(const char *cmd, unsigned who, int argc, char **argv, int *i,
                        struct mx_cli_opts *o) {
    const char *a = argv[*i];
    const char *eq = strncmp(a, "--", 2) == 0 ? strchr(a, '=') : NULL;
    size_t alen = eq ? (size_t)(eq - a) : strlen(a);
    for (size_t k = 0; k < sizeof specs / sizeof specs[0]; k++) {
        const struct spec *p = &specs[k];
        if (!(p->who & who))
            continue;
        const char *names[3] = {p->shrt, p->lng, p->alt}, *hit = NULL;
        for (int j = 0; j < 3 && !hit; j++)
            if (names[j] && strlen(names[j]) == alen && !strncmp(a, names[j], alen))
                hit = names[j];
        if (!hit)
            continue;
        bool takes = p->kind != K_ON && p->kind != K_OFF;
        if (!takes) {
            if (eq) {
                fprintf(stderr, "mixel%s%s: %s takes no value\n", SP(cmd), hit);
                return -1;
            }
            (*i)++;
            return set(cmd, p, hit, NULL, o) < 0 ? -1 : 1;
        }
        const char *val = eq ? eq + 1 : *i + 1 < argc ? argv[*i + 1] : NULL;
        if (!val) {
            fprintf(stderr, "mixel%s%s: %s needs a value (%s)\n", SP(cmd), hit, p->arg);
            return -1;
        }
        if (set(cmd, p, hit, val, o) < 0)
            return -1;
        *i += eq ? 1 : 2;
        return 1;
    }
    return 0;
}

/* Takes argv[*i] if it is one of the extras: 1 taken, 0 not one of them, -1 error printed. */
static int parse_extra(const char *cmd, int argc, char **argv, int *i,
                       const struct mx_cli_extra *x, size_t n_x) {
    const char *a = argv[*i];
    const char *eq = strncmp(a, "--", 2) == 0 ? strchr(a, '=') : NULL;
    size_t alen = eq ? (size_t)(eq - a) : strlen(a);
    for (size_t k = 0; k < n_x; k++) {
        const struct mx_cli_extra *p = &x[k];
        const char *hit = p->shrt && strlen(p->shrt) == alen && !strncmp(a, p->shrt, alen)
                              ? p->shrt
                          : strlen(p->lng) == alen && !strncmp(a, p->lng, alen) ? p->lng
                                                                                  : NULL;
        if (!hit)
            continue;
        const char *next = *i + 1 < argc ? argv[*i + 1] : NULL;
        switch (p->kind) {
        case MX_X_FLAG:
            if (eq) {
                fprintf(stderr, "mixel%s%s: %s takes no value\n", SP(cmd), hit);
                return -1;
            }
            *(bool *)p->dst = true;
            *i += 1;
            return 1;
        case MX_X_OPTSTR:
            if (eq) {
                *(const char **)p->dst = eq + 1;
                *i += 1;
            } else if (next && next[0] != '-') {
                *(const char **)p->dst = next;
                *i += 2;
            } else {
                *(const char **)p->dst = "";
                *i += 1;
            }
            return 1;
        case MX_X_LIST: {
            struct mx_cli_list *l = p->dst;
            const char *val = eq ? eq + 1 : next;
            if (!val) {
                fprintf(stderr, "mixel%s%s: %s needs a value (see mixel%s%s --help)\n", SP(cmd),
                        hit, SP(cmd));
                return -1;
            }
            if (l->n == MX_CLI_LIST_MAX) {
                fprintf(stderr, "mixel%s%s: %s given more than %d times\n", SP(cmd), hit,
                        MX_CLI_LIST_MAX);
                return -1;
            }
            l->v[l->n++] = val;
            *i += eq ? 1 : 2;
            return 1;
        }
        case MX_X_STR:
        case MX_X_INT: {
            const char *val = eq ? eq + 1 : next;
            if (!val) {
                fprintf(stderr, "mixel%s%s: %s needs a value (see mixel%s%s --help)\n", SP(cmd),
                        hit, SP(cmd));
                return -1;
            }
            if (p->kind == MX_X_STR) {
                *(const char **)p->dst = val;
            } else if (!parse_whole(val, p->lo, p->hi, (long long *)p->dst)) {
                char want[96];
                snprintf(want, sizeof want, "a whole number from %lld to %lld", p->lo, p->hi);
                return bad(cmd, hit, val, want);
            }
            *i += eq ? 1 : 2;
            return 1;
        }
        }
    }
    return 0;
}

/* The load's bar on stderr: "loading ████░░… 1.21 GB of 4.37 GB", redrawn in place at most every
 * 1 %, and only for a load that has taken half a second already (a small or cached model loads
 * without a flash of bar); cleared when done (the load's own line says what was loaded). */
static void load_bar(void *ud, uint64_t done, uint64_t total) {
    static uint64_t last;
    static double t0;
    static bool shown;
    (void)ud;
    if (t0 == 0 || done < last) /* a new load */
        t0 = mx_time_s();
    if (done < total && done >= last && done - last < total / 100)
        return;
    last = done;
    if (done >= total) {
        if (shown)
            fprintf(stderr, "\r\033[K");
        last = 0;
        t0 = 0;
        shown = false;
        return;
    }
    if (!shown && mx_time_s() - t0 < 0.5)
        return;
    shown = true;
    char d[24], t[24], bar[24 * 3 + 1];
    mx_fmt_bytes((double)done, d, sizeof d);
    mx_fmt_bytes((double)total, t, sizeof t);
    mx_text_bar(total ? (double)done / (double)total : 0, 24, bar, sizeof bar);
    fprintf(stderr, "\rloading %s %s of %s\033[K", bar, d, t);
}

int mx_cli_parse(const char *cmd, unsigned who, int argc, char **argv, struct mx_cli_opts *o,
                 const struct mx_cli_extra *x, size_t n_x, void (*help)(FILE *f)) {
    for (int i = 1; i < argc;) {
        int r = mx_cli_parse_common(cmd, who, argc, argv, &i, o);
        if (r == 0)
            r = parse_extra(cmd, argc, argv, &i, x, n_x);
        if (r < 0)
            return -1;
        if (r > 0)
            continue;
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            help(stdout);
            return 1;
        }
        fprintf(stderr, "mixel%s%s: %s '%s' (see mixel%s%s --help)\n", SP(cmd),
                a[0] == '-' ? "unknown option" : "unexpected argument", mx_safe(a), SP(cmd));
        return -1;
    }
    if (!!o->s.grammar + !!o->json_schema + o->json > 1) {
        fprintf(stderr, "mixel%s%s: --grammar, --json-schema and --json exclude each other "
                "(see mixel%s%s --help)\n", SP(cmd), SP(cmd));
        return -1;
    }
    /* a model's load shows its bytes on a terminal (cold multi-GB files take a while) */
    if (!o->quiet && isatty(STDERR_FILENO)) {
        o->s.on_load = load_bar;
        o->s.on_load_ud = NULL;
    }
    return 0;
}

const char *mx_cli_schema_gbnf(const char *cmd, const char *path) {
    static char *kept[4]; /* reachable until exit: settings borrow the text */
    static size_t n_kept;
    char *text = NULL, *gbnf = NULL;
    size_t len = 0;
    if (mx_cli_read_file(path, cmd, &text, &len))
        return NULL;
    struct mx_err err = {0};
    int rc = mx_json_schema_to_gbnf(text, len, &gbnf, &err);
    free(text);
    if (rc < 0) {
        mx_cli_err(cmd, "%s: %s", path, mx_err_msg(&err, rc));
        return NULL;
    }
    if (n_kept == sizeof kept / sizeof kept[0]) {
        free(gbnf);
        mx_cli_err(cmd, "%s: too many schemas", path);
        return NULL;
    }
    kept[n_kept++] = gbnf;
    return gbnf;
}

int mx_cli_grammar_setup(const char *cmd, struct mx_cli_opts *o) {
    if (o->json) {
        o->s.grammar_text = mx_json_any_gbnf();
        o->s.grammar_name = "--json";
    } else if (o->json_schema) {
        if (!(o->s.grammar_text = mx_cli_schema_gbnf(cmd, o->json_schema)))
            return 1;
        o->s.grammar_name = o->json_schema;
    }
    return 0;
}

void mx_cli_common_help(FILE *f, unsigned who) {
    for (size_t k = 0; k < sizeof specs / sizeof specs[0]; k++) {
        const struct spec *p = &specs[k];
        if (!(p->who & who))
            continue;
        char left[64];
        snprintf(left, sizeof left, "%s%s%s%s%s%s%s", p->shrt ? p->shrt : "",
                 p->shrt ? ", " : "", p->lng, p->alt ? ", " : "", p->alt ? p->alt : "",
                 p->arg ? " " : "", p->arg ? p->arg : "");
        /* the help wrapped at 100 columns under its own column */
        const char *h = p->help;
        int col = 28;
        fprintf(f, "  %-*s", col - 2, left);
        if (strlen(left) > (size_t)col - 3)
            fprintf(f, "\n%*s", col, "");
        for (;;) {
            size_t room = 99 - (size_t)col, n = strlen(h);
            if (n <= room) {
                fprintf(f, "%s\n", h);
                break;
            }
            size_t cut = room;
            while (cut > 0 && h[cut] != ' ')
                cut--;
            if (cut == 0)
                cut = room;
            fprintf(f, "%.*s\n%*s", (int)cut, h, col, "");
            h += cut + (h[cut] == ' ');
        }
    }
}

static void log_stderr(enum mx_log_level level, const char *msg, void *ud) {
    const struct mx_cli_opts *o = ud;
    if (level == MX_LOG_DEBUG && !o->verbose)
        return;
    if (level == MX_LOG_INFO && o->quiet)
        return;
    static const char *names[] = {"debug", "info", "warning", "error"};
    fprintf(stderr, "mixel: %s: %s\n", names[level], mx_safe(msg));
}

void mx_cli_log_init(const struct mx_cli_opts *o) {
    mx_log_set(log_stderr, (void *)o);
}

/* mx_cli_model_path / mx_cli_sd_model_path with the discovery's resolver. */
static const char *model_path_with(const char *cmd, const char *model,
                                   int (*resolve)(const char *, const char *,
                                                  const char *const *, const char *, char **,
                                                  struct mx_err *)) {
    static char *resolved;
    struct stat st;
    if (!model || stat(model, &st) == 0)
        return model;
    struct mx_err err = {0};
    char cwd[4096];
    char *path = NULL;
    int rc = resolve(getenv("HOME"), getcwd(cwd, sizeof cwd) ? cwd : NULL, NULL, model, &path,
                     &err);
    if (rc == MX_ENOENT)
        return model; /* no such name either: opening the path explains, with the name */
    if (rc < 0) {
        mx_cli_err(cmd, "%s", mx_err_msg(&err, rc));
        return NULL;
    }
    free(resolved);
    resolved = path;
    return resolved;
}

/* mx_discover_resolve in the resolver's shape (GGUF discovery takes no extra folders). */
static int resolve_gguf(const char *home, const char *cwd, const char *const *dirs,
                        const char *name, char **path, struct mx_err *err) {
    (void)dirs;
    return mx_discover_resolve(home, cwd, name, path, err);
}

const char *mx_cli_model_path(const char *cmd, const char *model) {
    return model_path_with(cmd, model, resolve_gguf);
}

const char *mx_cli_sd_model_path(const char *cmd, const char *model) {
    return model_path_with(cmd, model, mx_discover_sd_resolve);
}

int mx_cli_resolve_model(const char *cmd, struct mx_cli_opts *o) {
    const char *path = mx_cli_model_path(cmd, o->model);
    if (!path)
        return 1;
    o->model = path;
    return 0;
}

const char *mx_safe(const char *s) {
    static char *bufs[8];
    static size_t caps[8];
    static unsigned next;
    if (!s)
        s = "(null)";
    size_t len = strlen(s), need = MX_SANITIZE_MAX(len);
    unsigned k = next++ % 8;
    if (caps[k] < need) {
        char *b = realloc(bufs[k], need);
        if (!b)
            return "(out of memory)";
        bufs[k] = b;
        caps[k] = need;
    }
    mx_text_sanitize(s, len, bufs[k], false);
    return bufs[k];
}

void mx_cli_err(const char *cmd, const char *fmt, ...) {
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "mixel %s: %s\n", cmd, mx_safe(msg));
}

int mx_cli_read_file(const char *path, const char *cmd, char **buf, size_t *len) {
    struct mx_err err = {0};
    int rc = mx_read_file(path, 0, buf, len, &err);
    if (rc < 0) {
        mx_cli_err(cmd, "%s", mx_err_msg(&err, rc));
        return 1;
    }
    return 0;
}

static volatile sig_atomic_t g_interrupted;           /* set by on_interrupt */
static struct sigaction g_old_int, g_old_term;         /* what the catch replaced */
static bool g_caught_term;                             /* SIGTERM was caught too */

static void on_interrupt(int sig) {
    (void)sig;
    g_interrupted = 1;
}

void mx_cli_interrupt_catch(bool term) {
    struct sigaction sa = {0};
    sa.sa_handler = on_interrupt; /* no SA_RESTART: a blocked read returns and is polled */
    g_interrupted = 0;
    g_caught_term = term;
    sigaction(SIGINT, &sa, &g_old_int);
    if (term)
        sigaction(SIGTERM, &sa, &g_old_term);
}

void mx_cli_interrupt_restore(void) {
    sigaction(SIGINT, &g_old_int, NULL);
    if (g_caught_term)
        sigaction(SIGTERM, &g_old_term, NULL);
}

bool mx_cli_interrupted(void *ud) {
    (void)ud;
    return g_interrupted != 0;
}

int mx_cli_parse_ids(const char *s, const char *cmd, int32_t **ids, int64_t *n) {
    size_t cap = 64, k = 0;
    int32_t *v = malloc(cap * sizeof *v);
    if (!v)
        goto oom;
    for (const char *p = s; *p;) {
        if (*p < '0' || *p > '9') {
            if (*p == '-') {
                fprintf(stderr, "mixel %s: negative token id in the list\n", cmd);
                free(v);
                return 1;
            }
            p++;
            continue;
        }
        long long x = 0;
        while (*p >= '0' && *p <= '9') {
            x = x * 10 + (*p++ - '0');
            if (x > INT32_MAX) {
                fprintf(stderr, "mixel %s: token id too large\n", cmd);
                free(v);
                return 1;
            }
        }
        if (k == cap) {
            int32_t *nv = realloc(v, cap * 2 * sizeof *v);
            if (!nv)
                goto oom;
            v = nv;
            cap *= 2;
        }
        v[k++] = (int32_t)x;
    }
    if (k == 0) {
        fprintf(stderr, "mixel %s: no token ids given\n", cmd);
        free(v);
        return 1;
    }
    *ids = v;
    *n = (int64_t)k;
    return 0;
oom:
    free(v);
    fprintf(stderr, "mixel %s: out of memory\n", cmd);
    return 1;
}
