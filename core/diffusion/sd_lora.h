/* sd_lora.h - LoRA adapters for Stable Diffusion at inference: kohya/A1111 and diffusers/PEFT
 * .safetensors files read and mapped onto a checkpoint's canonical (LDM) weight names, and
 * applied as W' = W + w * (alpha / rank) * up * down into working copies of only the affected
 * tensors, so that the stored (mapped) weights never change and a different LoRA set between
 * two images needs no reopening of the checkpoint.
 *
 * FILE NAMES (one module = the tensors sharing a prefix):
 *   kohya    lora_unet_<name>.lora_down.weight / .lora_up.weight / .alpha, where <name> is the
 *            UNet weight's diffusers name (down_blocks_0_attentions_0_..._attn1_to_q) or LDM
 *            name (input_blocks_1_1_..._attn1_to_q) with '.' written '_'; lora_te_<name> the
 *            text encoder's Hugging Face name (text_model_encoder_layers_0_self_attn_q_proj).
 *            SDXL: lora_unet_<name> with the SGM (input_blocks_4_1_...) or diffusers name,
 *            lora_te1_<name> CLIP-L and lora_te2_<name> OpenCLIP bigG, both in Hugging Face
 *            names (bigG's self_attn_q/k/v_proj land on the thirds of its fused in_proj, which
 *            sd_model.c keeps as separate q/k/v_proj weights).
 *            LoCon/LyCORIS conv layers: down is a k x k conv [rank, in, k, k], up 1 x 1.
 *   diffusers unet.<diffusers name>.lora_A.weight / .lora_B.weight (PEFT), .lora.down.weight /
 *            .lora.up.weight, and the older attention-processor form
 *            unet.<...>.processor.to_q_lora.down.weight; text_encoder.<HF name>.* likewise
 *            (SDXL: text_encoder.* CLIP-L, text_encoder_2.* bigG).
 *   Scale alpha / rank; without .alpha 1 (as A1111 and stable-diffusion.cpp read them).
 * REFUSED with a message naming the tensor: a tensor that maps onto no weight of the checkpoint,
 * up/down shapes that do not fit the weight, SDXL names (lora_te1_/lora_te2_, text_encoder_2,
 * label_emb) on an SD 1.x/2.x checkpoint and SD 1.x/2.x's lora_te_ on an SDXL one,
 * LyCORIS kinds other than LoCon (LoHa hada_*, LoKr lokr_*, Tucker lora_mid), a module without
 * both up and down, non-float dtypes, a module on a vector (norm or bias: the UNet and CLIP keep
 * F32 copies of those made when they are built).
 * Ref: A1111 extensions-builtin/Lora (networks.py convert_diffusers_name_to_compvis,
 * network_lora.py), stable-diffusion.cpp lora.hpp.
 *
 * MEMORY AND SPEED: only the adapted tensors are copied (F16 stays F16), so the UNet runs at
 * its usual speed; applying costs rank x in x out multiply-adds per weight, once per change of
 * the LoRA set (the pipeline keeps the set and skips an unchanged one).
 *
 * HOW TO USE
 *   struct mx_sd_lora *l; mx_sd_lora_open(model, "style.safetensors", &l, &err);
 *   struct mx_sd_lora_state *s = mx_sd_lora_state_new();
 *   struct mx_sd_lora_use u = {l, 0.8f, 0.8f};
 *   mx_sd_lora_apply(model, s, &u, 1, &err);  ... generate ...
 *   mx_sd_lora_apply(model, s, NULL, 0, &err);  (back to the stored weights)
 *   mx_sd_lora_state_free(model, s); mx_sd_lora_close(l);
 */
#ifndef MX_SD_LORA_H
#define MX_SD_LORA_H

#include <stddef.h>
#include <stdint.h>

#include "core/base/err.h"
#include "core/diffusion/sd_model.h"

struct mx_sd_lora;
struct mx_sd_lora_state;

/* A LoRA and the weights it is applied at (A1111: te and unet multipliers). */
struct mx_sd_lora_use {
    const struct mx_sd_lora *lora; /* borrowed */
    float w_te;                    /* multiplier of the text-encoder modules */
    float w_unet;                  /* multiplier of the UNet modules */
};

/* Reads a LoRA file and maps every module onto m's weights (checked: names, shapes). Returns 0,
 * or MX_ENOENT / MX_EFORMAT / MX_EUNSUP / MX_ENOMEM with err "path: tensor NAME ...". The
 * values are kept as F32 (the file is closed). */
int mx_sd_lora_open(const struct mx_sd_model *m, const char *path, struct mx_sd_lora **out,
                    struct mx_err *err);
/* The same over a file image in memory (borrowed only during the call); name in messages. */
int mx_sd_lora_open_mem(const struct mx_sd_model *m, const void *buf, size_t size,
                        const char *name, struct mx_sd_lora **out, struct mx_err *err);
void mx_sd_lora_close(struct mx_sd_lora *l); /* NULL ok */

const char *mx_sd_lora_path(const struct mx_sd_lora *l);
int mx_sd_lora_n_modules(const struct mx_sd_lora *l); /* adapted weights */
/* The canonical weight name module i adapts (0 <= i < n), or NULL. */
const char *mx_sd_lora_target(const struct mx_sd_lora *l, int i);

/* The working copies a model currently runs with (none at first). */
struct mx_sd_lora_state *mx_sd_lora_state_new(void); /* NULL on out of memory */
/* Restores m's stored weights and frees s; call before closing m. NULLs ok. */
void mx_sd_lora_state_free(struct mx_sd_model *m, struct mx_sd_lora_state *s);

/* Makes m run with exactly the n LoRAs of use (n 0: the stored weights): restores what s
 * changed, then for every weight some LoRA adapts makes a working copy (F16 for an F16 weight,
 * F32 for F32, quantized or BF16 weights dequantized to F32) holding W + sum w * scale * up *
 * down, summed in F32. A LoRA at weight 0 is left out (the stored weights exactly). Every lora
 * must have been opened on m. Returns 0 or MX_ENOMEM / MX_EUNSUP (then m runs with its stored
 * weights). Nothing may run m while this runs. */
int mx_sd_lora_apply(struct mx_sd_model *m, struct mx_sd_lora_state *s,
                     const struct mx_sd_lora_use *use, int n, struct mx_err *err);

/* Bytes of working copies s holds (for the report and tests). */
size_t mx_sd_lora_state_bytes(const struct mx_sd_lora_state *s);

#endif
