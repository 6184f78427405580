/* params_text.h - generation parameters <-> AUTOMATIC1111's infotext (the PNG "parameters"
 * text): the one conversion `mixel image`, `--from-png` and the chat's /image share, so every
 * image mixel writes can be read back by A1111's PNG Info and by mixel itself.
 */
#ifndef MX_SD_PARAMS_TEXT_H
#define MX_SD_PARAMS_TEXT_H

#include <stdint.h>

#include "core/base/err.h"
#include "core/diffusion/hires.h"
#include "core/diffusion/infotext.h"
#include "core/diffusion/pipeline.h"

/* The infotext of one image made with par and seed (par->seed + index) by the checkpoint at
 * model_path (A1111's "Model": its file or folder name without extension), with A1111 hash
 * hash (NULL or empty: left out). *out is malloc'd (caller frees). Returns 0 or MX_ENOMEM. */
int mx_sd_params_to_infotext(const struct mx_sd_params *par, uint64_t seed,
                             const char *model_path, const char *hash, char **out,
                             struct mx_err *err);

/* The same with A1111's "Lora hashes" parameter ("NAME: hash12, ...", from
 * mx_sd_pipeline_lora_hashes; NULL or empty: left out), quoted as A1111 writes it. */
int mx_sd_params_to_infotext_ex(const struct mx_sd_params *par, uint64_t seed,
                                const char *model_path, const char *hash,
                                const char *lora_hashes, char **out, struct mx_err *err);

/* The same for an image made with the hires fix hr (NULL or not enabled: none) and textual-
 * inversion embeddings: Size is the first pass's, then "Denoising strength" and A1111's "Hires
 * upscale" (or "Hires resize: WxH"), "Hires steps" (when not 0) and "Hires upscaler"; and
 * "TI hashes" ("name: hash12, ...", from mx_sd_pipeline_ti_hashes; NULL or empty: left out). */
int mx_sd_params_to_infotext_full(const struct mx_sd_params *par, const struct mx_sd_hires *hr,
                                  uint64_t seed, const char *model_path, const char *hash,
                                  const char *lora_hashes, const char *ti_hashes, char **out,
                                  struct mx_err *err);

/* Applies the settings of a parsed infotext to par: prompt, negative prompt, steps, sampler
 * (and the schedule an A1111 sampler name carries), schedule type, CFG, size, clip skip, RNG,
 * denoising strength; *seed and *has_seed get the seed when the text has one. Strings in par borrow
 * from it (keep it alive while par is used). Fields the text lacks are left as they were.
 * Returns 0, or MX_EINVAL naming a value mixel cannot use (an unknown sampler, ...). */
int mx_sd_params_from_infotext(const struct mx_sd_infotext *it, struct mx_sd_params *par,
                               uint64_t *seed, int *has_seed, struct mx_err *err);

#endif
