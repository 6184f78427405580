/* server_sd.h - AUTOMATIC1111's image API for `mixel serve`: /sdapi/v1/txt2img request bodies read
 * into the image job's request (app/image_job.h), and the response, progress and base64 text
 * written as A1111 writes them, so its clients (and mixel's --remote-images) read them unchanged.
 * Pure JSON work (jansson); the request is untrusted and every field is checked.
 */
#ifndef MX_SERVER_SD_H
#define MX_SERVER_SD_H

#include <stddef.h>
#include <stdint.h>

#include "core/base/err.h"
#include "app/image_job.h"

#define MX_SDAPI_MAX_BATCH 16 /* images per request: each is a whole generation on one worker */

/* A parsed txt2img request. */
struct mx_sdapi_req {
    struct mx_image_req img;   /* prompt, negative, size, steps, cfg, sampler, seed (owned) */
    int batch;                 /* batch_size * n_iter images, seeds seed, seed + 1, ... */
    void *root;                /* owned: the request's jansson tree, echoed as "parameters" */
};

/* Parses body[0..len) (A1111's field names: prompt, negative_prompt, steps, cfg_scale, width,
 * height, seed (-1: random), sampler_name, scheduler, batch_size, n_iter, clip_skip... other
 * fields A1111 has are ignored) into *r. img.seed_set is false for a random seed (the caller
 * draws one). Returns 0, MX_EINVAL naming the field, or MX_ENOMEM; *r is then empty. */
int mx_sdapi_parse(const char *body, size_t len, struct mx_sdapi_req *r, struct mx_err *err);

/* Frees what r owns and empties it. NULL ok. */
void mx_sdapi_req_free(struct mx_sdapi_req *r);

/* One finished image of a request. */
struct mx_sdapi_image {
    const char *png_b64;       /* the PNG file as base64 */
    const char *infotext;      /* its A1111 parameters text */
    uint64_t seed;
};

/* {"images":[b64...], "parameters": the request, "info": "<JSON text: prompt, all_prompts,
 * negative_prompt, seed, all_seeds, width, height, sampler_name, cfg_scale, steps, infotexts>"}
 * for im[0..n) made at w x h with steps. Returns a malloc'd string or NULL (out of memory). */
char *mx_sdapi_response(const struct mx_sdapi_req *r, const struct mx_sdapi_image *im, int n,
                        int w, int h, int steps);

/* /sdapi/v1/progress: {"progress": done/total (0 idle), "eta_relative": seconds, "state":
 * {"sampling_step", "sampling_steps", "job_count", ...}, "current_image": null, "textinfo"}.
 * Returns a malloc'd string or NULL. */
char *mx_sdapi_progress(double done, double total, double eta_s, int job_count,
                        const char *textinfo);


#endif
