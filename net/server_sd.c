/* server_sd.c - A1111's /sdapi/v1 JSON for `mixel serve` (see server_sd.h). */
#include "net/server_sd.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "net/oai.h"

/* Reads number field key of o into *out when present and in [lo, hi]; whole numbers only when
 * whole. Returns 1 read, 0 absent (or null), MX_EINVAL naming the field. */
static int num_field(const json_t *o, const char *key, double lo, double hi, bool whole,
                     double *out, struct mx_err *err) {
    const json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v))
        return 0;
    double d = json_number_value(v);
    if (!json_is_number(v) || !(d >= lo && d <= hi) || (whole && d != floor(d)))
        return mx_err_set(err, MX_EINVAL, "%s: must be a %s from %g to %g", key,
                          whole ? "whole number" : "number", lo, hi);
    *out = d;
    return 1;
}

/* Copies string field key of o into *dst (malloc'd) when present. Returns 0, MX_EINVAL (not a
 * string, or with a NUL inside), MX_ENOMEM. */
static int str_field(const json_t *o, const char *key, char **dst, struct mx_err *err) {
    const json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v))
        return mx_err_set(err, MX_EINVAL, "%s: must be a string", key);
    if (!(*dst = strdup(json_string_value(v))))
        return mx_err_set(err, MX_ENOMEM, "request: out of memory");
    return 0;
}

int mx_sdapi_parse(const char *body, size_t len, struct mx_sdapi_req *r, struct mx_err *err) {
    memset(r, 0, sizeof *r);
    r->img.cfg = -1;
    r->img.eta = -1;
    r->img.strength = -1;
    json_error_t je;
    json_t *root = json_loadb(body ? body : "", len, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return mx_err_set(err, MX_EINVAL, "request body: not valid JSON (%s at line %d column "
                          "%d)", je.text, je.line, je.column);
    r->root = root;
    int rc;
    double d;
    if (!json_is_object(root)) {
        rc = mx_err_set(err, MX_EINVAL, "request body: must be a JSON object");
        goto fail;
    }
    if ((rc = str_field(root, "prompt", &r->img.prompt, err)) < 0 ||
        (rc = str_field(root, "negative_prompt", &r->img.negative, err)) < 0 ||
        (rc = str_field(root, "sampler_name", &r->img.sampler, err)) < 0 ||
        (rc = str_field(root, "scheduler", &r->img.scheduler, err)) < 0)
        goto fail;
    if (!r->img.prompt && !(r->img.prompt = strdup(""))) {
        rc = mx_err_set(err, MX_ENOMEM, "request: out of memory");
        goto fail;
    }
    /* A1111 sends "Automatic" for the sampler's own schedule */
    if (r->img.scheduler && !strcmp(r->img.scheduler, "Automatic")) {
        free(r->img.scheduler);
        r->img.scheduler = NULL;
    }
    if ((rc = num_field(root, "steps", 1, 500, true, &d, err)) < 0)
        goto fail;
    if (rc)
        r->img.steps = (int)d;
    if ((rc = num_field(root, "cfg_scale", 0, 100, false, &d, err)) < 0)
        goto fail;
    if (rc)
        r->img.cfg = (float)d;
    if ((rc = num_field(root, "width", 8, 4096, true, &d, err)) < 0)
        goto fail;
    if (rc)
        r->img.width = (int)d;
    if ((rc = num_field(root, "height", 8, 4096, true, &d, err)) < 0)
        goto fail;
    if (rc)
        r->img.height = (int)d;
    if ((rc = num_field(root, "clip_skip", 1, 12, true, &d, err)) < 0)
        goto fail;
    if (rc)
        r->img.clip_skip = (int)d;
    if ((rc = num_field(root, "eta", 0, 1, false, &d, err)) < 0)
        goto fail;
    if (rc)
        r->img.eta = (float)d;
    if ((rc = num_field(root, "seed", -1, 4294967295.0, true, &d, err)) < 0)
        goto fail;
    if (rc && d >= 0) {
        r->img.seed = (uint64_t)d;
        r->img.seed_set = true;
    }
    double bs = 1, it = 1;
    if ((rc = num_field(root, "batch_size", 1, MX_SDAPI_MAX_BATCH, true, &bs, err)) < 0 ||
        (rc = num_field(root, "n_iter", 1, MX_SDAPI_MAX_BATCH, true, &it, err)) < 0)
        goto fail;
    if (bs * it > MX_SDAPI_MAX_BATCH) {
        rc = mx_err_set(err, MX_EINVAL, "batch_size * n_iter: at most %d images per request "
                        "(got %g)", MX_SDAPI_MAX_BATCH, bs * it);
        goto fail;
    }
    r->batch = (int)(bs * it);
    return 0;
fail:
    mx_sdapi_req_free(r);
    return rc;
}

void mx_sdapi_req_free(struct mx_sdapi_req *r) {
    if (!r)
        return;
    mx_image_req_free(&r->img);
    json_decref(r->root);
    memset(r, 0, sizeof *r);
}

/* Dumps v compactly and drops it; NULL in, NULL out. */
static char *dump(json_t *v) {
    if (!v)
        return NULL;
    char *s = json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(v);
    return s;
}

char *mx_sdapi_response(const struct mx_sdapi_req *r, const struct mx_sdapi_image *im, int n,
                        int w, int h, int steps) {
    json_t *images = json_array(), *prompts = json_array(), *seeds = json_array(),
           *texts = json_array();
    for (int i = 0; images && prompts && seeds && texts && i < n; i++) {
        json_array_append_new(images, json_string(im[i].png_b64));
        json_array_append_new(prompts, mx_oai_json_text(r->img.prompt, strlen(r->img.prompt)));
        json_array_append_new(seeds, json_integer((json_int_t)im[i].seed));
        json_array_append_new(texts, mx_oai_json_text(im[i].infotext, strlen(im[i].infotext)));
    }
    const char *neg = r->img.negative ? r->img.negative : "";
    char *info = dump(json_pack(
        "{sosososIsosisisssfsiso}", "prompt", mx_oai_json_text(r->img.prompt,
                                                              strlen(r->img.prompt)),
        "all_prompts", prompts, "negative_prompt", mx_oai_json_text(neg, strlen(neg)), "seed",
        (json_int_t)(n > 0 ? im[0].seed : 0), "all_seeds", seeds, "width", w, "height", h,
        "sampler_name", r->img.sampler ? r->img.sampler : "", "cfg_scale",
        r->img.cfg >= 0 ? (double)r->img.cfg : 7.0, "steps", steps, "infotexts", texts));
    if (!info) {
        json_decref(images);
        return NULL;
    }
    char *out = dump(json_pack("{sosOss}", "images", images, "parameters", (json_t *)r->root,
                               "info", info));
    free(info);
    return out;
}

char *mx_sdapi_progress(double done, double total, double eta_s, int job_count,
                        const char *textinfo) {
    double p = total > 0 ? done / total : 0;
    return dump(json_pack("{sfsfs{sbsbsssisssisisi}snso}", "progress", p, "eta_relative", eta_s,
                          "state", "skipped", 0, "interrupted", 0, "job", "", "job_count",
                          job_count, "job_timestamp", "0", "job_no", 0, "sampling_step",
                          (int)done, "sampling_steps", (int)total, "current_image", "textinfo",
                          mx_oai_json_text(textinfo ? textinfo : "",
                                           textinfo ? strlen(textinfo) : 0)));
}

