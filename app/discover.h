/* discover.h - finding the GGUF models already on this machine, for the first-run picker.
 *
 * With no model configured, `mixel` lists the models a user already downloaded with other tools:
 * ~/models (recursive), the Hugging Face hub cache (models--ORG--NAME/snapshots/REV/, symlinks
 * into blobs/), ollama's blob store (manifests resolved to NAME:TAG), LM Studio's models folders
 * and the current directory. A candidate must start with the GGUF magic and be at least 1 KiB;
 * of a split model (NAME-00001-of-0000N.gguf) only the first shard is listed, with the size of
 * all shards. The same file reached two ways (a symlink, two hub revisions) is listed once.
 *
 * Stable Diffusion checkpoints (single-file safetensors and diffusers folders) are found by
 * mx_discover_sd in the folders AUTOMATIC1111, Forge, ComfyUI and the Hugging Face hub use.
 *
 * This module is pure (no ncurses): it walks folders, reads 4-byte magics, ollama's JSON
 * manifests and, on request, GGUF headers through core/format/gguf.h (mmap; only header pages are
 * touched). The walk never follows a symlink loop (folders are tracked by device and inode),
 * stops after a budget of directory entries, and skips unreadable folders and broken manifests
 * silently: discovery is a convenience and never an error the user must handle.
 *
 * Names and paths are untrusted bytes (file names, manifest paths, GGUF strings): the caller
 * sanitises them before they reach the terminal (core/base/text.h).
 */
#ifndef MX_DISCOVER_H
#define MX_DISCOVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "core/base/err.h"

/* Directory entries one discovery may look at before it stops (out->truncated is then set). */
#define MX_DISCOVER_MAX_VISIT 20000
/* Folder depth below ~/models (and LM Studio's folders) that is searched. */
#define MX_DISCOVER_MAX_DEPTH 4

/* Where a model was found. */
enum mx_model_source {
    MX_SRC_HF = 0,        /* Hugging Face hub cache */
    MX_SRC_OLLAMA = 1,    /* ollama manifests + blobs */
    MX_SRC_LMSTUDIO = 2,  /* ~/.lmstudio/models, ~/.cache/lm-studio/models */
    MX_SRC_MODELS = 3,    /* ~/models */
    MX_SRC_CWD = 4,       /* the current directory (not recursive) */
    MX_SRC_A1111 = 5,     /* AUTOMATIC1111 / Forge: models/Stable-diffusion */
    MX_SRC_COMFYUI = 6,   /* ComfyUI: ~/ComfyUI/models/checkpoints */
    MX_SRC_CONFIG = 7,    /* a folder the caller passes (configured checkpoint folders) */
};

/* One model found. Strings are owned by the list (freed by mx_model_list_free). */
struct mx_model_entry {
    char *name;                  /* display name: "ORG/NAME: f.gguf", "mistral:latest (ollama)",
                                    "sub/f.gguf" (relative to ~/models), "f.gguf" (cwd) */
    char *path;                  /* path to open (--model): as found, symlinks not resolved */
    char *real;                  /* resolved path (realpath): the key for duplicates */
    uint64_t size;               /* bytes; of all shards for a split model */
    int64_t mtime;               /* seconds since the epoch: the file's (ollama: the manifest's) */
    enum mx_model_source source;
    int n_shards;                /* 1, or N of a -00001-of-0000N split */
    char *sd_kind;               /* SD entries (mx_discover_sd) only: what the keys say, e.g.
                                    "SD 1.x checkpoint (CompVis/LDM key names): UNet + VAE + ..."
                                    or "SD 1.x diffusers folder (StableDiffusionPipeline)";
                                    NULL for GGUF entries */

    /* Filled by mx_discover_read_meta (meta == 0 until then). */
    int meta;                    /* 0 not read, 1 read, -1 header unreadable (see meta_err) */
    char *title;                 /* general.name, or NULL */
    char *arch;                  /* general.architecture, or NULL */
    uint64_t n_params;           /* parameters: sum of all tensors' element counts (all shards) */
    uint32_t n_experts;          /* <arch>.expert_count, 0 for a dense model */
    uint32_t n_experts_used;     /* <arch>.expert_used_count, 0 when absent */
    uint32_t n_ctx_train;        /* <arch>.context_length, 0 when absent */
    int main_type;               /* enum mx_type holding most weight bytes (2-D+ tensors), or -1 */
    char meta_err[160];          /* why the header could not be read, when meta == -1 */
};

/* The result of a discovery, most recently modified first (ties: by name, then path). */
struct mx_model_list {
    struct mx_model_entry *items; /* n entries (caller frees with mx_model_list_free) */
    size_t n;
    size_t cap;                   /* allocated items */
    size_t n_visited;             /* directory entries looked at */
    bool truncated;               /* the visit budget ran out: some folders were not searched */
};

/* Searches the usual places below home (may be NULL: only $HF_HOME/$HF_HUB_CACHE/$OLLAMA_MODELS/
 * $XDG_CACHE_HOME are then used) and cwd (may be NULL: skipped). Environment honoured:
 * HF_HUB_CACHE, HF_HOME, XDG_CACHE_HOME (hub cache), OLLAMA_MODELS. *out is initialised here
 * (its previous content is not freed) and owned by the caller, even on failure. Returns 0 (also
 * when nothing was found), MX_EINVAL for a NULL out, MX_ENOMEM. Missing or unreadable folders,
 * broken manifests and non-GGUF files are skipped without error. Reads the environment, so it
 * must not run beside a setenv; otherwise thread-safe (no globals). */
int mx_discover_models(const char *home, const char *cwd, struct mx_model_list *out,
                       struct mx_err *err);

/* The same with a directory-entry budget (0 means MX_DISCOVER_MAX_VISIT). */
int mx_discover_models_ex(const char *home, const char *cwd, size_t max_visit,
                          struct mx_model_list *out, struct mx_err *err);

/* Stable Diffusion checkpoints, found the way mx_discover_models finds GGUFs: single-file
 * .safetensors whose tensor names hold a CompVis/LDM UNet with cross-attention (SD 1.x, 2.x,
 * SDXL; core/diffusion/sd_kind.h reads the header only), and diffusers folders (model_index.json
 * naming a StableDiffusion* pipeline; listed as the folder, its size that of the files in its
 * unet/, vae/, text_encoder/ and text_encoder_2/ folders, not descended into). Places, in this order (the first name of a file reached twice wins): each
 * folder of dirs (NULL-terminated, may be NULL: configured checkpoint folders, recursive), the
 * A1111 and Forge checkpoint folders (~/stable-diffusion-webui/models/Stable-diffusion,
 * ~/stable-diffusion-webui-forge/models/Stable-diffusion), ComfyUI's (~/ComfyUI/models/
 * checkpoints), the Hugging Face hub cache (a snapshot with model_index.json is a diffusers
 * entry named "ORG/NAME"; single files are "ORG/NAME: file.safetensors"), ~/models and the
 * current folder (its own entries only). Names are relative to their folder, as A1111 shows them
 * ("sub/name.safetensors"). The budget, loop guard, environment, ordering and ownership are those
 * of mx_discover_models_ex (max_visit 0: MX_DISCOVER_MAX_VISIT); entries have sd_kind set and
 * meta 0 (mx_discover_read_meta is for GGUFs). Returns 0, MX_EINVAL, MX_ENOMEM. */
int mx_discover_sd(const char *home, const char *cwd, const char *const *dirs, size_t max_visit,
                   struct mx_model_list *out, struct mx_err *err);

/* The SD checkpoint for a name as mx_discover_sd shows it (its display name, or the file's or
 * folder's own name), for `mixel image -d NAME`. Same results as mx_discover_resolve. */
int mx_discover_sd_resolve(const char *home, const char *cwd, const char *const *dirs,
                           const char *name, char **path, struct mx_err *err);

/* The checkpoint the chat draws with when none was chosen: the first SD 1.x/2.x entry of
 * mx_discover_sd (SDXL is listed there too, and the pipeline does not draw it). Returns a
 * malloc'd path, or NULL when there is none (or out of memory). */
char *mx_discover_sd_default(const char *home, const char *cwd);
/* The LoRA folders where <lora:NAME> is looked up for checkpoint ckpt (may be NULL): beside the
 * checkpoint's own models folder (A1111 .../models/Stable-diffusion/x -> .../models/Lora,
 * ComfyUI .../models/checkpoints/x -> .../models/loras), then ~/stable-diffusion-webui(-forge)/
 * models/Lora and ~/ComfyUI/models/loras; only folders that exist, without repeats. *out is a
 * NULL-terminated array (free with mx_discover_lora_dirs_free). Returns 0 or MX_ENOMEM. */
int mx_discover_lora_dirs(const char *home, const char *ckpt, char ***out, struct mx_err *err);
void mx_discover_lora_dirs_free(char **dirs); /* NULL ok */
/* The textual-inversion embedding folders for checkpoint ckpt (may be NULL): first (a folder
 * the user named, or NULL), then beside the checkpoint's models folder (A1111
 * .../models/Stable-diffusion/x -> .../embeddings, ComfyUI .../models/checkpoints/x ->
 * .../models/embeddings), then ~/stable-diffusion-webui(-forge)/embeddings and
 * ~/ComfyUI/models/embeddings; only folders that exist, without repeats. *out as
 * mx_discover_lora_dirs (free with mx_discover_lora_dirs_free). Returns 0 or MX_ENOMEM. */
int mx_discover_embedding_dirs(const char *home, const char *ckpt, const char *first,
                               char ***out, struct mx_err *err);

/* A TAESD decoder for live previews of checkpoint ckpt (may be NULL): taesd_decoder.safetensors
 * or taesd.safetensors (xl: taesdxl_...) in the preview-decoder folders beside its models folder
 * (A1111 .../models/VAE-approx, ComfyUI .../models/vae_approx), then under home in
 * stable-diffusion-webui(-forge)/models/VAE-approx and ComfyUI/models/vae_approx. The first
 * found goes into buf. Returns 0, or MX_ENOENT when there is none. */
int mx_discover_taesd(const char *home, const char *ckpt, bool xl, char *buf, size_t size);

/* Frees the entries and their strings and zeroes the list (NULL ok). */
void mx_model_list_free(struct mx_model_list *list);

/* Reads the GGUF header (all shards for a split model) of one entry: title, architecture,
 * parameter count, experts, training context and dominant weight type. The files are mapped and
 * only their headers are touched. Returns 0 with e->meta = 1, or a negative MX_E* with
 * e->meta = -1 and the reason in e->meta_err (and err). */
int mx_discover_read_meta(struct mx_model_entry *e, struct mx_err *err);

/* mx_discover_read_meta for every entry; failures stay recorded per entry. Returns the number of
 * entries whose header was read. */
size_t mx_discover_read_meta_all(struct mx_model_list *list);

/* One line for the picker, e.g. "Mixtral 8x7B · 46.7B llama 8x2 · q4_K · 26.4 GB", or
 * "llama · 7.2 GB" when little is known (untrusted bytes: sanitise before display). Always
 * NUL-terminates buf (size > 0); returns the length it wanted (snprintf style). */
size_t mx_discover_describe(const struct mx_model_entry *e, char *buf, size_t size);

/* Name of a source: "huggingface", "ollama", "lm-studio", "~/models", "current dir",
 * "a1111", "comfyui", "configured". */
const char *mx_model_source_name(enum mx_model_source s);

/* Human size "26.4 GB" / "812 MB" / "3.0 KB" (decimal units, as model cards use). */
void mx_discover_format_size(uint64_t bytes, char *buf, size_t size);

/* The model file for a name as discovery shows it (the same places as mx_discover_models): an
 * entry's display name ("ORG/NAME: f.gguf", "sub/f.gguf"), that name without its " (source)"
 * tag ("tinystory:latest"), or the file's own name. Returns 0 with *path (caller frees),
 * MX_ENOENT when no model has that name, MX_EINVAL when several different files do (err lists
 * them), MX_ENOMEM. */
int mx_discover_resolve(const char *home, const char *cwd, const char *name, char **path,
                        struct mx_err *err);

/* Discovers from $HOME and the current directory, reads headers and prints the list to f
 * (sanitised: control bytes shown inert), or a hint about --model when nothing was found; then,
 * in a section of their own, the Stable Diffusion checkpoints (mx_discover_sd, no configured
 * folders) or where they were looked for. For `mixel list`, `mixel doctor` and `mixel chat`.
 * Returns the number of GGUF models or a negative MX_E*. */
int mx_discover_print(FILE *f);

#endif
