/* image_req.c - the request of an image job (image_job.h): a slash command's words read as a
 * shell would split them, the CLI's option names, and the progress text the status bar shows.
 * Apart from image_job.c so that it is tested without the pipeline.
 */
#include "app/image_job.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the request ----------------------------------------------------------------------------- */

void mx_image_req_free(struct mx_image_req *r) {
    if (!r)
        return;
    free(r->prompt);
    free(r->negative);
    free(r->ckpt);
    free(r->sampler);
    free(r->scheduler);
    free(r->rng);
    free(r->init_path);
    free(r->out_dir);
    free(r->device);
    free(r->hires_upscaler);
    free(r->preview_path);
    for (int i = 0; i < r->n_loras; i++)
        free(r->loras[i]);
    memset(r, 0, sizeof *r);
}

void mx_image_result_free(struct mx_image_result *res) {
    if (!res)
        return;
    free(res->path);
    free(res->infotext);
    free(res->params_json);
    memset(res, 0, sizeof *res);
}

/* The next word of *s into out (size bytes, NUL-terminated): blanks skipped, '...' taken as it
 * is, "..." with \" \\ escapes, a bare \ escaping the next character. Returns 1 (a word), 0 (no
 * more) or MX_EINVAL (an unclosed quote) / MX_ERANGE (a word longer than size). */
static int next_word(const char **s, char *out, size_t size, struct mx_err *err) {
    const char *p = *s;
    while (*p == ' ' || *p == '\t')
        p++;
    if (!*p) {
        *s = p;
        return 0;
    }
    size_t n = 0;
    char q = 0;
    for (; *p && (q || (*p != ' ' && *p != '\t')); p++) {
        char c = *p;
        if (q == '\'' && c == '\'') {
            q = 0;
            continue;
        }
        if (q == '"' && c == '"') {
            q = 0;
            continue;
        }
        if (!q && (c == '\'' || c == '"')) {
            q = c;
            continue;
        }
        if (q != '\'' && c == '\\' && p[1] && (!q || p[1] == '"' || p[1] == '\\'))
            c = *++p;
        if (n + 1 >= size)
            return mx_err_set(err, MX_ERANGE, "a word is longer than %zu bytes", size - 1);
        out[n++] = c;
    }
    if (q)
        return mx_err_set(err, MX_EINVAL, "a %s quote is not closed",
                          q == '"' ? "double" : "single");
    out[n] = '\0';
    *s = p;
    return 1;
}

/* Option names the request takes, with the field each fills. */
enum opt_id { O_NEG, O_W, O_H, O_STEPS, O_CFG, O_SAMPLER, O_SCHED, O_SEED, O_RNG, O_CLIP,
              O_ETA, O_STRENGTH, O_MODEL, O_LORA, O_HR_SCALE, O_HR_W, O_HR_H, O_HR_STEPS,
              O_DENOISE, O_HR_UP, O_BCOUNT, O_BSIZE };

/* `mixel image`'s names (cli/cmd_image.c), so a command line carries over */
static const struct { const char *shrt, *lng; enum opt_id id; } opts[] = {
    {"-n", "--negative", O_NEG},       {NULL, "--negative-prompt", O_NEG},
    {"-W", "--width", O_W},            {"-H", "--height", O_H},
    {NULL, "--steps", O_STEPS},        {NULL, "--cfg", O_CFG},
    {NULL, "--cfg-scale", O_CFG},      {NULL, "--sampler", O_SAMPLER},
    {NULL, "--scheduler", O_SCHED},    {NULL, "--schedule", O_SCHED},
    {"-s", "--seed", O_SEED},          {NULL, "--rng", O_RNG},
    {NULL, "--clip-skip", O_CLIP},     {NULL, "--eta", O_ETA},
    {NULL, "--strength", O_STRENGTH},  {"-d", "--model", O_MODEL},
    {"-m", "--model", O_MODEL},        {NULL, "--lora", O_LORA},
    {NULL, "--hires-scale", O_HR_SCALE}, {NULL, "--hires-width", O_HR_W},
    {NULL, "--hires-height", O_HR_H},  {NULL, "--hires-steps", O_HR_STEPS},
    {NULL, "--denoise", O_DENOISE},    {NULL, "--hires-upscaler", O_HR_UP},
    {NULL, "--batch-count", O_BCOUNT}, {NULL, "--batch-size", O_BSIZE},
};

/* A whole number in [lo, hi] from v for option name. */
static int parse_int(const char *name, const char *v, long long lo, long long hi, long long *out,
                     struct mx_err *err) {
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (!*v || *end || errno || x < lo || x > hi)
        return mx_err_set(err, MX_EINVAL, "%s takes a whole number from %lld to %lld, not '%s'",
                          name, lo, hi, v);
    *out = x;
    return 0;
}

/* A number in [lo, hi] from v for option name. */
static int parse_num(const char *name, const char *v, double lo, double hi, float *out,
                     struct mx_err *err) {
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (!*v || *end || errno || !(x >= lo && x <= hi))
        return mx_err_set(err, MX_EINVAL, "%s takes a number from %g to %g, not '%s'", name, lo,
                          hi, v);
    *out = (float)x;
    return 0;
}

/* Appends word to the prompt (a space between words). Returns 0 or MX_ENOMEM. */
static int prompt_add(struct mx_image_req *r, const char *word) {
    size_t old = r->prompt ? strlen(r->prompt) : 0, n = strlen(word);
    char *p = realloc(r->prompt, old + n + 2);
    if (!p)
        return MX_ENOMEM;
    if (old)
        p[old++] = ' ';
    memcpy(p + old, word, n + 1);
    r->prompt = p;
    return 0;
}

int mx_image_req_parse(const char *arg, struct mx_image_req *r, struct mx_err *err) {
    memset(r, 0, sizeof *r);
    r->cfg = -1;
    r->eta = -1;
    r->strength = -1;
    r->denoise = -1;
    size_t cap = (arg ? strlen(arg) : 0) + 1;
    char *w = malloc(cap), *v = malloc(cap);
    const char *s = arg ? arg : "";
    bool options = true;
    int rc = w && v ? 0 : MX_ENOMEM;
    while (rc == 0 && (rc = next_word(&s, w, cap, err)) == 1) {
        rc = 0;
        int k = -1;
        if (options && w[0] == '-' && w[1])
            for (size_t i = 0; i < sizeof opts / sizeof opts[0] && k < 0; i++)
                if ((opts[i].shrt && !strcmp(w, opts[i].shrt)) || !strcmp(w, opts[i].lng))
                    k = (int)i;
        if (options && !strcmp(w, "--")) {
            options = false;
            continue;
        }
        if (k < 0 && options && w[0] == '-' && w[1] && !(w[1] >= '0' && w[1] <= '9')) {
            rc = mx_err_set(err, MX_EINVAL, "unknown option %s (options: -n/--negative, -W, -H, "
                            "--steps, --cfg, --sampler, --scheduler, -s/--seed, --rng, "
                            "--clip-skip, --eta, --strength, -d/--model, --lora, --hires-scale, "
                            "--hires-width, --hires-height, --hires-steps, --denoise, "
                            "--hires-upscaler, --batch-count, --batch-size; -- ends them)", w);
            break;
        }
        if (k < 0) {
            rc = prompt_add(r, w);
            continue;
        }
        if ((rc = next_word(&s, v, cap, err)) != 1) {
            rc = rc < 0 ? rc : mx_err_set(err, MX_EINVAL, "%s needs a value", w);
            break;
        }
        rc = 0;
        long long x = 0;
        char **str = NULL;
        switch (opts[k].id) {
        case O_NEG: str = &r->negative; break;
        case O_SAMPLER: str = &r->sampler; break;
        case O_SCHED: str = &r->scheduler; break;
        case O_RNG: str = &r->rng; break;
        case O_MODEL: str = &r->ckpt; break;
        case O_LORA:
            if (r->n_loras == MX_IMAGE_MAX_LORAS)
                rc = mx_err_set(err, MX_EINVAL, "--lora given more than %d times",
                                MX_IMAGE_MAX_LORAS);
            else if (!(r->loras[r->n_loras++] = strdup(v)))
                rc = MX_ENOMEM;
            break;
        case O_W:
        case O_H:
            if ((rc = parse_int(w, v, 8, 4096, &x, err)) == 0)
                *(opts[k].id == O_W ? &r->width : &r->height) = (int)x;
            break;
        case O_STEPS:
            if ((rc = parse_int(w, v, 1, 1000, &x, err)) == 0)
                r->steps = (int)x;
            break;
        case O_CLIP:
            if ((rc = parse_int(w, v, 1, 12, &x, err)) == 0)
                r->clip_skip = (int)x;
            break;
        case O_SEED:
            /* -1 is A1111's "random"; else any unsigned 64-bit seed */
            if (!strcmp(v, "-1") || !strcmp(v, "random")) {
                r->seed_set = false;
                break;
            }
            errno = 0;
            char *end;
            unsigned long long u = strtoull(v, &end, 10);
            if (!*v || *end || errno || v[0] == '-')
                rc = mx_err_set(err, MX_EINVAL, "--seed takes a whole number (-1: random), "
                                "not '%s'", v);
            else
                r->seed = u, r->seed_set = true;
            break;
        case O_HR_UP: str = &r->hires_upscaler; r->hires = true; break;
        case O_HR_SCALE:
            rc = parse_num(w, v, 1, 8, &r->hires_scale, err);
            r->hires = true;
            break;
        case O_DENOISE:
            rc = parse_num(w, v, 0, 1, &r->denoise, err);
            r->hires = true;
            break;
        case O_HR_W:
        case O_HR_H:
            if ((rc = parse_int(w, v, 64, 4096, &x, err)) == 0)
                *(opts[k].id == O_HR_W ? &r->hires_width : &r->hires_height) = (int)x;
            r->hires = true;
            break;
        case O_HR_STEPS:
            if ((rc = parse_int(w, v, 0, 1000, &x, err)) == 0)
                r->hires_steps = (int)x;
            r->hires = true;
            break;
        case O_BCOUNT:
        case O_BSIZE:
            if ((rc = parse_int(w, v, 1, 100, &x, err)) == 0)
                *(opts[k].id == O_BCOUNT ? &r->batch_count : &r->batch_size) = (int)x;
            break;
        case O_CFG: rc = parse_num(w, v, 0, 100, &r->cfg, err); break;
        case O_ETA: rc = parse_num(w, v, 0, 10, &r->eta, err); break;
        case O_STRENGTH:
            rc = parse_num(w, v, 0, 1, &r->strength, err);
            if (rc == 0 && r->strength <= 0)
                rc = mx_err_set(err, MX_EINVAL, "--strength takes a number above 0 up to 1");
            break;
        }
        if (rc == 0 && str) {
            free(*str);
            if (!(*str = strdup(v)))
                rc = MX_ENOMEM;
        }
    }
    free(w);
    free(v);
    if (rc == 0 && !r->prompt && !(r->prompt = strdup("")))
        rc = MX_ENOMEM;
    if (rc == MX_ENOMEM)
        mx_err_set(err, rc, "out of memory");
    if (rc < 0)
        mx_image_req_free(r);
    return rc < 0 ? rc : 0;
}

/* ---- progress -------------------------------------------------------------------------------- */

size_t mx_image_progress_text(const struct mx_sd_progress *p, double step_s, char *buf,
                              size_t size) {
    int n;
    switch (p->phase) {
    case MX_SD_PHASE_TEXT: n = snprintf(buf, size, "image: encoding the prompt"); break;
    case MX_SD_PHASE_ENCODE: n = snprintf(buf, size, "image: encoding the source image"); break;
    case MX_SD_PHASE_DECODE: n = snprintf(buf, size, "image: decoding"); break;
    case MX_SD_PHASE_DONE: n = snprintf(buf, size, "image: done"); break;
    default:
        if (step_s > 0) {
            double eta = step_s * (p->steps - p->step);
            n = snprintf(buf, size, "image %d/%d \xc2\xb7 %.*f s/step \xc2\xb7 ETA %.0f s", p->step,
                         p->steps, step_s < 10 ? 1 : 0, step_s, eta);
        } else {
            n = snprintf(buf, size, "image %d/%d", p->step, p->steps);
        }
    }
    return n < 0 ? 0 : (size_t)n < size ? (size_t)n : size ? size - 1 : 0;
}

