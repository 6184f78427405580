/* sd_model_impl.h - what the checkpoint readers (one per source format) share with sd_model.c.
 * Private to core/diffusion/. */
#ifndef MX_SD_MODEL_IMPL_H
#define MX_SD_MODEL_IMPL_H

#include "core/diffusion/sd_model.h"
#include "core/format/safetensors.h"

/* Adds every float tensor of st whose name starts with `from`, renamed to `to` + the rest
 * (from "" adds all); non-float tensors (position_ids) are skipped. The model takes ownership
 * of st, also on failure once st is registered (check the file list before closing it). A
 * tensor added later under an existing name replaces the earlier one. */
int mx_sd_add_st(struct mx_sd_model *m, struct mx_st *st, const char *from, const char *to,
                 struct mx_err *err);

#endif
