/* params_text.c - mx_sd_params <-> A1111 infotext (see params_text.h). */
#include "core/diffusion/params_text.h"

#include <stdlib.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/diffusion/rng.h"
#include "core/diffusion/sampler.h"
#include "core/diffusion/schedule.h"

int mx_sd_params_to_infotext(const struct mx_sd_params *par, uint64_t seed,
                             const char *model_path, const char *hash, char **out,
                             struct mx_err *err) {
    return mx_sd_params_to_infotext_ex(par, seed, model_path, hash, NULL, out, err);
}

int mx_sd_params_to_infotext_ex(const struct mx_sd_params *par, uint64_t seed,
                                const char *model_path, const char *hash,
                                const char *lora_hashes, char **out, struct mx_err *err) {
    return mx_sd_params_to_infotext_full(par, NULL, seed, model_path, hash, lora_hashes, NULL,
                                         out, err);
}

int mx_sd_params_to_infotext_full(const struct mx_sd_params *par, const struct mx_sd_hires *hr,
                                  uint64_t seed, const char *model_path, const char *hash,
                                  const char *lora_hashes, const char *ti_hashes, char **out,
                                  struct mx_err *err) {
    struct mx_sd_infotext it;
    mx_sd_infotext_init(&it);
    it.prompt = (char *)(par->prompt ? par->prompt : "");
    it.negative = par->negative && *par->negative ? (char *)par->negative : NULL;
    it.steps = par->steps;
    it.sampler = (char *)mx_sd_sampler_a1111_name(par->sampler);
    it.schedule = (char *)mx_sd_schedule_a1111_name(mx_sd_params_schedule(par));
    it.cfg = par->cfg;
    it.has_seed = true;
    it.seed = seed;
    it.w = par->width;
    it.h = par->height;
    it.model_hash = hash && *hash ? (char *)hash : NULL;
    /* A1111's "Model": the checkpoint's name without folder and extension */
    char model[256] = "";
    if (model_path) {
        size_t len = strlen(model_path);
        while (len > 1 && model_path[len - 1] == '/')
            len--;
        const char *base = model_path;
        for (size_t i = 0; i < len; i++)
            if (model_path[i] == '/')
                base = model_path + i + 1;
        snprintf(model, sizeof model, "%.*s", (int)(len - (size_t)(base - model_path)), base);
        char *dot = strrchr(model, '.');
        if (dot && dot != model)
            *dot = '\0';
        it.model = model;
    }
    it.strength = par->init ? par->strength : -1.0f;
    it.clip_skip = par->clip_skip > 1 ? par->clip_skip : 1;
    /* A1111's "RNG" setting: absent = its GPU generator, which on NVIDIA cards is the Philox
     * stream mixel's cuda RNG reproduces; "CPU" = torch's CPU generator. stable-diffusion.cpp's
     * std_default has no A1111 name: written under its own. */
    it.rng = par->rng == MX_SD_RNG_CPU           ? "CPU"
             : par->rng == MX_SD_RNG_STD_DEFAULT ? "std_default"
                                                  : NULL;
    it.version = "mixel";
    int rc = 0;
    if (hr && hr->enabled) { /* A1111's init_hr keys, in its order */
        it.strength = hr->strength;
        rc = mx_sd_hires_infotext(hr, &it);
    }
    if (rc == 0 && lora_hashes && *lora_hashes)
        rc = mx_sd_infotext_set_extra(&it, "Lora hashes", lora_hashes);
    if (rc < 0)
        rc = mx_err_set(err, rc, "infotext: out of memory");
    if (rc == 0 && ti_hashes && *ti_hashes &&
        (rc = mx_sd_infotext_set_extra(&it, "TI hashes", ti_hashes)) < 0)
        rc = mx_err_set(err, rc, "infotext: out of memory");
    if (rc == 0)
        rc = mx_sd_infotext_format(&it, out, err);
    /* every string above is borrowed but the extras set_extra copied */
    for (size_t i = 0; i < it.n_extra; i++) {
        free(it.extra[i].key);
        free(it.extra[i].value);
    }
    free(it.extra);
    return rc;
}

int mx_sd_params_from_infotext(const struct mx_sd_infotext *it, struct mx_sd_params *par,
                               uint64_t *seed, int *has_seed, struct mx_err *err) {
    if (it->prompt)
        par->prompt = it->prompt;
    if (it->negative)
        par->negative = it->negative;
    if (it->steps > 0)
        par->steps = it->steps;
    if (!isnan(it->cfg))
        par->cfg = it->cfg;
    if (it->w > 0 && it->h > 0) {
        par->width = it->w;
        par->height = it->h;
    }
    if (it->clip_skip > 0)
        par->clip_skip = it->clip_skip;
    if (it->strength >= 0)
        par->strength = it->strength;
    int rc;
    if (it->sampler) {
        int s, sch = -1;
        if ((rc = mx_sd_sampler_parse(it->sampler, &s, &sch, err)) < 0)
            return rc;
        par->sampler = s;
        if (sch >= 0)
            par->scheduler = sch;
    }
    if (it->schedule) {
        int sch;
        if ((rc = mx_sd_schedule_parse(it->schedule, &sch, err)) < 0)
            return rc;
        if (sch >= 0 || !it->sampler) /* "Automatic" keeps what the sampler name said */
            par->scheduler = sch;
    }
    if (it->rng) {
        int k;
        if (!strcmp(it->rng, "NV"))
            k = MX_SD_RNG_CUDA; /* A1111's CPU emulation of the NVIDIA generator */
        else if ((rc = mx_sd_rng_parse(it->rng, &k, err)) < 0)
            return rc;
        par->rng = k;
    }
    if (it->has_seed) {
        *seed = it->seed;
        *has_seed = 1;
    }
    return 0;
}
