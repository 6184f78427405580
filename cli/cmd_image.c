/* cmd_image.c - `mixel image`: Stable Diffusion txt2img, img2img and inpainting to PNG files
 * carrying AUTOMATIC1111's "parameters" chunk, with a progress bar on stderr, and --show to draw
 * the result in the terminal. Option names follow stable-diffusion.cpp's sd-cli (and A1111's
 * sampler names are accepted), so users' command lines carry over.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "app/llm.h"
#include "app/discover.h"
#include "app/model_hash.h"
#include "cli/cmd.h"
#include "cli/opts.h"
#include "core/base/util.h"
#include "core/diffusion/hires.h"
#include "core/diffusion/infotext.h"
#include "core/diffusion/params_text.h"
#include "core/diffusion/pipeline.h"
#include "core/diffusion/preview.h"
#include "core/diffusion/rng.h"
#include "core/diffusion/sampler.h"
#include "core/diffusion/schedule.h"
#include "core/image/grid.h"
#include "core/image/png_text.h"
#include "kernels/devices.h"
#include "cli/remote.h"
#include "net/remote_images.h"
#include "tui/graphics.h"
#include "tui/image_term.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: mixel image -d CKPT -p PROMPT [options] -o out.png\n"
            "\n"
            "Generates images with a Stable Diffusion 1.x/2.x or SDXL checkpoint (.safetensors, a\n"
            "diffusers folder, or a stable-diffusion.cpp .gguf) and writes PNGs with an\n"
            "AUTOMATIC1111 \"parameters\" chunk (A1111's PNG Info reads it back).\n"
            "\n"
            "  -d, --model CKPT          the checkpoint (also -m)\n"
            "  -p, --prompt TEXT         the prompt; A1111 weighting: (word), (word:1.5), [word],\n"
            "                            BREAK\n"
            "  -n, --negative-prompt T   what to steer away from\n"
            "  -W, --width N, -H, --height N   size in pixels, multiples of 8 (default 512, or\n"
            "                            768 for SD 2.x v-prediction, 1024 for SDXL, 512 with\n"
            "                            1 step and cfg 1 for SDXL-Turbo)\n"
            "  --steps N                 sampling steps (default 20)\n"
            "  --cfg, --cfg-scale S      classifier-free guidance (default 7; 1 = no negative\n"
            "                            pass)\n"
            "  --sampler NAME            euler_a (default), or any of the list below, or an A1111\n"
            "                            name (\"DPM++ 2M Karras\" picks the schedule too)\n"
            "  --scheduler NAME          the sampler's default (discrete; simple for\n"
            "                            ddim_trailing, lcm for lcm), or any of the list below\n"
            "  --eta E                   noise of ancestral samplers / DDIM (default: the\n"
            "                            sampler's)\n"
            "  -s, --seed S              seed (default random; printed); -1 = random\n"
            "  --rng cuda|cpu|std_default   initial noise generator: cuda = A1111's (default),\n"
            "                            cpu = ComfyUI's, std_default = stable-diffusion.cpp's\n"
            "  --clip-skip N             1 = last CLIP layer (SD 1.x default), 2 = penultimate\n"
            "  -i, --init-img FILE       img2img: start from this picture (resized to the size)\n"
            "  --strength S              img2img denoising strength (default 0.75)\n"
            "  --mask FILE               inpaint: white = repaint, same size as the init image\n"
            "  -b, --batch N             N images, seeds S, S+1, ... (out.png, out_2.png, ...)\n"
            "  --batch-count N, --batch-size N   A1111's n_iter and batch_size: count x size\n"
            "                            images, seeds S, S+1, ... (one after the other), and\n"
            "                            with more than one a contact sheet out_grid.png\n"
            "                            (A1111's grid layout, the first image's parameters;\n"
            "                            --no-grid: none)\n"
            "  --hires                   the hires fix with A1111's defaults (x2, Latent, 0.7)\n"
            "  --hires-scale F           hires fix: generate at the size, upscale by F, then a\n"
            "                            second pass (A1111's \"Hires upscale\"; default 2)\n"
            "  --hires-width N, --hires-height N   hires fix to this size instead\n"
            "  --hires-steps N           second-pass steps (default: --steps)\n"
            "  --denoise S               second-pass denoising strength (default 0.7; 0 keeps the\n"
            "                            upscaled first pass)\n"
            "  --hires-upscaler NAME     latent (default), latent-bicubic, latent-nearest,\n"
            "                            latent-nearest-exact, lanczos, nearest (or A1111's names)\n"
            "  --preview                 draw the picture forming in the terminal while sampling\n"
            "                            (sixel or half blocks, redrawn in place; with --show\n"
            "                            the final image replaces it)\n"
            "  --preview-every N         a preview every N steps (default: automatic, about 3%%\n"
            "                            of the sampling time)\n"
            "  --taesd FILE              TAESD decoder for the preview (default: taesd_decoder\n"
            "                            .safetensors in models/VAE-approx or models/vae_approx;\n"
            "                            none found: a linear latent-to-RGB approximation)\n"
            "  --lora FILE[:W]           apply a LoRA (kohya/A1111 or diffusers .safetensors) at\n"
            "                            weight W (default 1; may be negative); repeatable. In\n"
            "                            the prompt, <lora:NAME:W> loads NAME.safetensors from\n"
            "                            models/Lora (A1111) or models/loras (ComfyUI) beside\n"
            "                            the checkpoint folder or under ~. SDXL LoRAs\n"
            "                            (lora_te1_/lora_te2_) need an SDXL checkpoint. An LCM\n"
            "                            LoRA wants --sampler lcm --steps 4 to 8 --cfg 1 to 2\n"
            "                            (set by hand; nothing switches automatically)\n"
            "  --embeddings DIR          textual-inversion embeddings (.safetensors) the prompt\n"
            "                            calls by file name (A1111) or embedding:NAME (ComfyUI);\n"
            "                            also looked up in embeddings/ (A1111) or\n"
            "                            models/embeddings (ComfyUI) beside the checkpoint folder\n"
            "                            or under ~ (--embd-dir: the same)\n"
            "  --vae FILE                a separate VAE (.safetensors)\n"
            "  --vae-tiling              decode in tiles (automatic when memory is short)\n"
            "  --prediction eps|v        override the detected prediction type\n"
            "  --from-png OLD.png        take prompt and settings from a PNG's parameters chunk\n"
            "                            (options given as well override them)\n"
            "  -o, --output FILE         output PNG (default output.png)\n"
            "  --show                    draw the result in the terminal\n"
            "  --remote-images URL       draw on an AUTOMATIC1111-compatible server instead\n"
            "                            (e.g. http://gpu-box:7860; /sdapi/v1/txt2img, img2img;\n"
            "                            -d names one of its checkpoints, default its loaded\n"
            "                            one; not with --mask, --vae, --rng, --from-png)\n");
    mx_cli_common_help(f, MX_CLI_IMAGE);
    fprintf(f, "\nsamplers: %s\nschedules: %s\n", mx_sd_sampler_names(), mx_sd_schedule_names());
}

/* Parses a float option value in [lo, hi]. Returns 0 or prints and returns -1. */
static int parse_float(const char *opt, const char *s, double lo, double hi, float *out) {
    char *end;
    errno = 0;
    double v = s ? strtod(s, &end) : 0;
    if (!s || errno || end == s || *end || !(v >= lo && v <= hi)) {
        mx_cli_err("image", "%s: '%s' is not a number from %g to %g", opt, s ? s : "", lo, hi);
        return -1;
    }
    *out = (float)v;
    return 0;
}

struct bar {
    bool quiet;                 /* -q: no progress lines */
    bool tty;
    int last_step;
    int image, n_images;
    struct mx_sd_progress last; /* the latest report: its timings end up in the summary */
    double sample_t0;           /* when sampling started */
    double sample_s;            /* sampling seconds of every pass so far (previews included) */
    struct preview *pv;         /* --preview: the live picture (NULL: none) */
};

/* --preview: the picture forming, drawn in place above the progress line. */
struct preview {
    struct mx_sd_preview *pv;   /* when and how */
    struct mx_gfx g;            /* the terminal */
    int w, h;                   /* the final image's pixels (the preview is scaled to them) */
    int box_cols, box_rows;     /* the cells the picture may take */
    int row, rows;              /* its top row (0-based) and height in cells; rows 0: no area */
    int pane_top, pane_left;    /* tmux: the pane's place in the outer terminal */
    bool failed;                /* a preview failed: no more (said once) */
};

/* mx_image_write_fn to stdout. */
static int out_write(void *ud, const char *buf, size_t n) {
    (void)ud;
    return fwrite(buf, 1, n, stdout) == n ? 0 : MX_EIO;
}

/* Makes room for an image's preview below the cursor and remembers where: newlines (scrolling
 * now rather than under the picture), back up, the cursor's row asked from the terminal, then
 * down again to the line the progress goes on. Returns 0, or -1 when the terminal cannot say
 * where the cursor is (no preview then). */
static int preview_area(struct preview *p) {
    struct mx_image_layout lay;
    p->rows = 0;
    if (mx_image_fit(p->w, p->h, p->g.cell_w, p->g.cell_h, p->box_cols, p->box_rows, p->g.max_w,
                     p->g.max_h, &lay) < 0)
        return -1;
    int rows = p->g.mode == MX_GFX_SIXEL ? lay.rows : (lay.blk_h + 1) / 2;
    for (int r = 0; r < rows; r++)
        fputc('\n', stdout);
    printf("\033[%dA", rows);
    fflush(stdout);
    int row, col;
    if (mx_gfx_cursor_pos(0, &row, &col) < 0)
        return -1;
    if (p->g.tmux_wrap && mx_gfx_tmux_pane_offset(&p->pane_top, &p->pane_left) < 0)
        p->pane_top = p->pane_left = 0;
    p->row = row - 1;
    p->rows = rows;
    printf("\033[%dB\r", rows);
    fflush(stdout);
    return 0;
}

/* Draws img in the preview area (the cursor stays where it is). */
static int preview_draw(struct preview *p, const struct mx_image *img, struct mx_err *err) {
    int rc = mx_gfx_place(&p->g, img, p->row, 0, p->box_cols, p->rows, p->pane_top, p->pane_left,
                          out_write, NULL, NULL, err);
    fflush(stdout);
    return rc;
}

/* The progress line on stderr: redrawn in place on a terminal, one line per step otherwise. */
static int on_progress(void *ud, const struct mx_sd_progress *p) {
    struct bar *b = ud;
    if (p->phase == MX_SD_PHASE_SAMPLE && p->step == 0)
        b->sample_t0 = p->elapsed_s;
    if (p->phase == MX_SD_PHASE_SAMPLE && p->step > 0)
        b->sample_s += p->step_s;
    b->last = *p;
    struct preview *pv = b->pv;
    if (pv && pv->rows && !pv->failed && mx_sd_preview_due(pv->pv, p)) {
        struct mx_image img;
        struct mx_err err = {0};
        double t0 = mx_time_s();
        int rc = mx_sd_preview_make(pv->pv, p, pv->w, pv->h, &img, &err);
        if (rc == 0) {
            rc = preview_draw(pv, &img, &err);
            mx_image_free(&img);
        }
        b->sample_s += mx_time_s() - t0; /* the step clock leaves the callback out */
        if (rc < 0) {
            pv->failed = true;
            fprintf(stderr, "%smixel image: preview: %s\n", b->tty ? "\r\033[K" : "",
                    mx_safe(mx_err_msg(&err, rc)));
        }
    }
    if (!b->quiet && p->phase == MX_SD_PHASE_SAMPLE && p->step > 0 && p->step != b->last_step) {
        b->last_step = p->step;
        double eta = p->step_s * (p->steps - p->step);
        char img[32] = "";
        if (b->n_images > 1)
            snprintf(img, sizeof img, "image %d/%d ", b->image + 1, b->n_images);
        int w = 30, fill = p->steps ? w * p->step / p->steps : w;
        char barbuf[64];
        for (int i = 0; i < w; i++)
            barbuf[i] = i < fill ? '#' : '.';
        barbuf[w] = '\0';
        fprintf(stderr, "%s%sstep %d/%d [%s] %.2f s/step, ETA %.0f s%s", b->tty ? "\r" : "", img,
                p->step, p->steps, barbuf, p->step_s, eta, b->tty ? "\033[K" : "\n");
        if (p->step == p->steps && b->tty && !(pv && pv->rows))
            fputc('\n', stderr);
        fflush(stderr);
    }
    return 0;
}

/* Output name of image i: out.png, out_2.png, ... (stable-diffusion.cpp's batch naming). */
static void out_name(const char *out, int i, char *buf, size_t size) {
    if (i == 0) {
        snprintf(buf, size, "%s", out);
        return;
    }
    const char *dot = strrchr(out, '.');
    const char *slash = strrchr(out, '/');
    if (!dot || (slash && dot < slash))
        snprintf(buf, size, "%s_%d", out, i + 1);
    else
        snprintf(buf, size, "%.*s_%d%s", (int)(dot - out), out, i + 1, dot);
}

/* Settings from an earlier PNG's parameters chunk into par (strings owned by info). Returns 0 or
 * prints and returns 1. */
static int apply_png(const char *path, struct mx_sd_infotext *info, struct mx_sd_params *par,
                     uint64_t *seed, bool *seed_set) {
    struct mx_err err = {0};
    char *text = NULL;
    if (mx_png_read_text(path, "parameters", &text, &err) < 0) {
        mx_cli_err("image", "--from-png: %s", err.msg);
        return 1;
    }
    int rc = mx_sd_infotext_parse(text, strlen(text), info, &err);
    free(text);
    int has = 0;
    if (rc == 0)
        rc = mx_sd_params_from_infotext(info, par, seed, &has, &err);
    if (rc < 0) {
        mx_cli_err("image", "--from-png %s: %s", path, err.msg);
        return 1;
    }
    if (has)
        *seed_set = true;
    return 0;
}


/* The server's progress (from the polling thread) as the local progress line. */
static void remote_progress(void *ud, const char *text, double done, double total) {
    struct bar *b = ud;
    (void)total;
    /* a terminal's line is redrawn at every poll; a log gets a line per step */
    bool again = (int)done == b->last_step;
    b->last_step = (int)done;
    if (!b->quiet && (b->tty || !again)) {
        fprintf(stderr, "%s%s%s", b->tty ? "\r" : "", mx_safe(text), b->tty ? "\033[K" : "\n");
        fflush(stderr);
    }
}

/* `mixel image --remote-images URL`: req drawn by the server, batch times (seeds S, S+1, ...),
 * each PNG written as out, out_2, ... Returns the exit status. */
static int image_remote(const struct mx_cli_opts *o, const char *url, struct mx_image_req *req,
                        int batch, const char *out, bool show) {
    struct mx_remote_opts ro;
    if (mx_cli_remote_images_opts("image", url, &ro) < 0)
        return 2;
    struct bar bar = {.quiet = o->quiet, .tty = isatty(2)};
    struct mx_remote_image_io io = {.progress = remote_progress, .canceled = mx_cli_interrupted,
                                    .ud = &bar};
    mx_cli_interrupt_catch(false);
    int status = 0;
    uint64_t seed = req->seed;
    for (int i = 0; i < batch && status == 0; i++) {
        char name[4096];
        out_name(out, i, name, sizeof name);
        req->seed = seed + (uint64_t)i;
        struct mx_image_result res;
        struct mx_err err = {0};
        int rc = mx_remote_image_generate(&ro, req, name, &io, &res, &err);
        if (bar.tty && !bar.quiet)
            fputs("\r\033[K", stderr);
        if (rc != 0) {
            mx_cli_err("image", "%s", rc == MX_ECANCELED ? "interrupted: the server was asked "
                       "to stop" : mx_err_msg(&err, rc));
            status = rc == MX_ECANCELED ? 130 : 1;
            break;
        }
        if (!o->quiet)
            fprintf(stderr, "mixel image: %dx%d, seed %llu, drawn by the server in %.1f s\n",
                    res.w, res.h, (unsigned long long)req->seed, res.seconds);
        printf("%s\n", mx_safe(name));
        fflush(stdout);
        mx_image_result_free(&res);
        if (show) {
            char *sargv[] = {"show", name, NULL};
            mx_cmd_show(2, sargv);
        }
    }
    mx_cli_interrupt_restore();
    mx_cli_remote_end();
    return status;
}

int mx_cmd_image(int argc, char **argv) {
    struct mx_cli_opts o;
    mx_cli_opts_init(&o);
    const char *model = NULL, *model_m = NULL, *prompt = NULL, *negative = NULL, *out = NULL;
    const char *sampler = NULL, *scheduler = NULL, *rng = NULL, *init = NULL, *mask = NULL;
    const char *vae = NULL, *prediction = NULL, *from_png = NULL, *cfg_s = NULL, *cfg2_s = NULL;
    const char *strength_s = NULL, *eta_s = NULL;
    long long width = 0, height = 0, steps = 0, clip_skip = 0, batch = 1;
    bool show = false, tiling = false, no_grid = false, want_preview = false, hires_on = false;
    long long batch_size = 1, batch_count = 0, hires_w = 0, hires_h = 0, hires_steps = -1, preview_every = 0;
    const char *hires_scale_s = NULL, *denoise_s = NULL, *upscaler = NULL, *taesd = NULL;
    const char *remote_url = NULL;
    struct mx_cli_list lora_opts = {0};
    const char *emb_dir = NULL;
    const struct mx_cli_extra extra[] = {
        {NULL, "--embeddings", MX_X_STR, &emb_dir, 0, 0},
        {NULL, "--embd-dir", MX_X_STR, &emb_dir, 0, 0},
        {NULL, "--remote-images", MX_X_STR, &remote_url, 0, 0},
        {NULL, "--lora", MX_X_LIST, &lora_opts, 0, 0},
        {"-d", "--diffusion-model", MX_X_STR, &model, 0, 0},
        {"-m", "--model", MX_X_STR, &model_m, 0, 0},
        {"-p", "--prompt", MX_X_STR, &prompt, 0, 0},
        {"-n", "--negative-prompt", MX_X_STR, &negative, 0, 0},
        {"-W", "--width", MX_X_INT, &width, 8, 1 << 16},
        {"-H", "--height", MX_X_INT, &height, 8, 1 << 16},
        {NULL, "--steps", MX_X_INT, &steps, 1, 10000},
        {NULL, "--cfg", MX_X_STR, &cfg_s, 0, 0},
        {NULL, "--cfg-scale", MX_X_STR, &cfg2_s, 0, 0},
        {NULL, "--sampler", MX_X_STR, &sampler, 0, 0},
        {NULL, "--sampling-method", MX_X_STR, &sampler, 0, 0},
        {NULL, "--scheduler", MX_X_STR, &scheduler, 0, 0},
        {NULL, "--schedule", MX_X_STR, &scheduler, 0, 0},
        {NULL, "--eta", MX_X_STR, &eta_s, 0, 0},
        {NULL, "--rng", MX_X_STR, &rng, 0, 0},
        {NULL, "--clip-skip", MX_X_INT, &clip_skip, 0, 12},
        {"-i", "--init-img", MX_X_STR, &init, 0, 0},
        {NULL, "--strength", MX_X_STR, &strength_s, 0, 0},
        {NULL, "--mask", MX_X_STR, &mask, 0, 0},
        {"-b", "--batch", MX_X_INT, &batch, 1, 1000},
        {NULL, "--batch-count", MX_X_INT, &batch_count, 1, 1000},
        {NULL, "--batch-size", MX_X_INT, &batch_size, 1, 100},
        {NULL, "--no-grid", MX_X_FLAG, &no_grid, 0, 0},
        {NULL, "--hires", MX_X_FLAG, &hires_on, 0, 0},
        {NULL, "--hires-scale", MX_X_STR, &hires_scale_s, 0, 0},
        {NULL, "--hires-width", MX_X_INT, &hires_w, 64, 4096},
        {NULL, "--hires-height", MX_X_INT, &hires_h, 64, 4096},
        {NULL, "--hires-steps", MX_X_INT, &hires_steps, 0, 1000},
        {NULL, "--denoise", MX_X_STR, &denoise_s, 0, 0},
        {NULL, "--hires-denoise", MX_X_STR, &denoise_s, 0, 0},
        {NULL, "--hires-upscaler", MX_X_STR, &upscaler, 0, 0},
        {NULL, "--preview", MX_X_FLAG, &want_preview, 0, 0},
        {NULL, "--preview-every", MX_X_INT, &preview_every, 1, 1000},
        {NULL, "--taesd", MX_X_STR, &taesd, 0, 0},
        {NULL, "--vae", MX_X_STR, &vae, 0, 0},
        {NULL, "--vae-tiling", MX_X_FLAG, &tiling, 0, 0},
        {NULL, "--prediction", MX_X_STR, &prediction, 0, 0},
        {NULL, "--from-png", MX_X_STR, &from_png, 0, 0},
        {"-o", "--output", MX_X_STR, &out, 0, 0},
        {NULL, "--show", MX_X_FLAG, &show, 0, 0},
    };
    int pr = mx_cli_parse("image", MX_CLI_IMAGE, argc, argv, &o, extra,
                          sizeof extra / sizeof extra[0], usage);
    if (pr)
        return pr > 0 ? 0 : 2;
    mx_cli_log_init(&o);
    if (!model)
        model = model_m;
    bool hires_given = hires_on || hires_scale_s || hires_w || hires_h || hires_steps >= 0 ||
                       denoise_s || upscaler;
    if (remote_url) { /* the strings are borrowed by req: nothing of it is freed */
        if (hires_given || want_preview || taesd || preview_every || batch_size > 1) {
            mx_cli_err("image", "--remote-images: the hires fix, --batch-size and --preview are "
                       "for local images");
            return 2;
        }
        if (vae || mask || prediction || from_png || rng || tiling || lora_opts.n || emb_dir) {
            mx_cli_err("image", "--remote-images: --vae, --mask, --prediction, --from-png, --rng, "
                       "--vae-tiling, --lora and --embeddings are for local images");
            return 2;
        }
        if (!prompt) {
            mx_cli_err("image", "no prompt: give one with -p TEXT");
            return 2;
        }
        struct mx_image_req req = {
            .prompt = (char *)prompt, .negative = (char *)negative, .ckpt = (char *)model,
            .width = (int)width, .height = (int)height, .steps = (int)steps, .cfg = -1,
            .sampler = (char *)sampler, .scheduler = (char *)scheduler,
            .clip_skip = (int)clip_skip, .eta = -1, .strength = -1, .init_path = (char *)init,
        };
        if ((cfg_s && parse_float("--cfg", cfg_s, 0, 100, &req.cfg) < 0) ||
            (cfg2_s && parse_float("--cfg-scale", cfg2_s, 0, 100, &req.cfg) < 0) ||
            (strength_s && parse_float("--strength", strength_s, 0, 1, &req.strength) < 0) ||
            (eta_s && parse_float("--eta", eta_s, 0, 10, &req.eta) < 0))
            return 2;
        if (strength_s && !init) {
            mx_cli_err("image", "--strength needs --init-img");
            return 2;
        }
        req.seed = o.seed_set ? o.s.sampling.seed : mx_gen_fresh_seed() & 0xffffffffu;
        return image_remote(&o, remote_url, &req, (int)(batch_count ? batch_count : batch),
                            out ? out : "output.png", show);
    }
    if (!model) {
        mx_cli_err("image", "no checkpoint: give one with -d CKPT (see mixel image --help)");
        return 2;
    }
    if (!prompt && !from_png) {
        mx_cli_err("image", "no prompt: give one with -p TEXT (or --from-png OLD.png)");
        return 2;
    }
    if (!(model = mx_cli_sd_model_path("image", model)))
        return 1;
    struct mx_sd_open_opts oo = {.vae_path = vae, .prediction = -1};
    if (prediction) {
        if (!strcmp(prediction, "eps"))
            oo.prediction = MX_SD_PRED_EPS;
        else if (!strcmp(prediction, "v"))
            oo.prediction = MX_SD_PRED_V;
        else {
            mx_cli_err("image", "--prediction: '%s' is not eps or v", prediction);
            return 2;
        }
    }
    struct mx_sd_lora_req loras[MX_CLI_LIST_MAX];
    char lora_paths[MX_CLI_LIST_MAX][4096];
    for (int i = 0; i < lora_opts.n; i++) {
        struct mx_err lerr = {0};
        float w;
        if (mx_sd_lora_arg_parse(lora_opts.v[i], lora_paths[i], sizeof lora_paths[i], &w,
                                 &lerr) < 0) {
            mx_cli_err("image", "%s", lerr.msg);
            return 2;
        }
        loras[i] = (struct mx_sd_lora_req){lora_paths[i], w, w};
    }
    char **lora_dirs = NULL, **emb_dirs = NULL;
    int status = 1;
    struct mx_err err = {0};
    struct mx_backend *be = NULL;
    struct mx_sd_pipeline *p = NULL;
    struct mx_image init_img = {0}, mask_img = {0};
    struct mx_sd_infotext png_info;
    mx_sd_infotext_init(&png_info);
    struct preview prev = {0};
    struct mx_image *made = NULL; /* the batch's images, for the grid */
    int n_made = 0;
    double t_start = mx_time_s();

    be = mx_device_open(o.s.device, o.s.threads, &err);
    if (!be) {
        mx_cli_err("image", "%s", err.msg);
        goto done;
    }
    if (mx_sd_pipeline_open(be, model, &oo, &p, &err) < 0) {
        mx_cli_err("image", "%s", err.msg);
        goto done;
    }
    const struct mx_sd_model *m = mx_sd_pipeline_model(p);
    struct mx_sd_params par;
    mx_sd_params_default(&par, p);
    uint64_t seed = o.s.sampling.seed;
    bool seed_set = o.seed_set;
    if (from_png && apply_png(from_png, &png_info, &par, &seed, &seed_set))
        goto done;
    if (prompt)
        par.prompt = prompt;
    if (negative)
        par.negative = negative;
    if (width)
        par.width = (int)width;
    if (height)
        par.height = (int)height;
    if (steps)
        par.steps = (int)steps;
    if (clip_skip)
        par.clip_skip = (int)clip_skip;
    par.vae_tiling = tiling;
    par.loras = loras;
    par.n_loras = lora_opts.n;
    if (mx_discover_lora_dirs(getenv("HOME"), model, &lora_dirs, &err) < 0) {
        mx_cli_err("image", "%s", err.msg);
        goto done;
    }
    par.lora_dirs = (const char *const *)lora_dirs;
    struct stat est;
    if (emb_dir && (stat(emb_dir, &est) != 0 || !S_ISDIR(est.st_mode))) {
        mx_cli_err("image", "--embeddings %s: not a folder", emb_dir);
        goto done;
    }
    if (mx_discover_embedding_dirs(getenv("HOME"), model, emb_dir, &emb_dirs, &err) < 0) {
        mx_cli_err("image", "%s", err.msg);
        goto done;
    }
    par.embedding_dirs = (const char *const *)emb_dirs;
    if ((cfg_s && parse_float("--cfg", cfg_s, 0, 100, &par.cfg) < 0) ||
        (cfg2_s && parse_float("--cfg-scale", cfg2_s, 0, 100, &par.cfg) < 0) ||
        (strength_s && parse_float("--strength", strength_s, 0, 1, &par.strength) < 0) ||
        (eta_s && parse_float("--eta", eta_s, 0, 10, &par.eta) < 0)) {
        status = 2;
        goto done;
    }
    if (sampler) {
        int smp, sch = -1;
        if (mx_sd_sampler_parse(sampler, &smp, &sch, &err) < 0) {
            mx_cli_err("image", "--sampler: %s", err.msg);
            status = 2;
            goto done;
        }
        par.sampler = smp;
        if (sch >= 0)
            par.scheduler = sch;
    }
    if (scheduler) {
        int sch;
        if (mx_sd_schedule_parse(scheduler, &sch, &err) < 0) {
            mx_cli_err("image", "--scheduler: %s", err.msg);
            status = 2;
            goto done;
        }
        par.scheduler = sch;
    }
    if (rng) {
        int k;
        if (mx_sd_rng_parse(rng, &k, &err) < 0) {
            mx_cli_err("image", "--rng: %s", err.msg);
            status = 2;
            goto done;
        }
        par.rng = k;
    }
    if (init) {
        if (mx_image_load(init, &init_img, &err) < 0) {
            mx_cli_err("image", "--init-img: %s", err.msg);
            goto done;
        }
        par.init = &init_img;
    } else if (strength_s) {
        mx_cli_err("image", "--strength needs --init-img");
        status = 2;
        goto done;
    }
    if (mask) {
        if (mx_image_load(mask, &mask_img, &err) < 0) {
            mx_cli_err("image", "--mask: %s", err.msg);
            goto done;
        }
        par.mask = &mask_img;
    }
    if (!seed_set)
        seed = mx_gen_fresh_seed() & 0xffffffffu; /* A1111 seeds are 32-bit */
    par.seed = seed;
    if (mx_sd_params_check(p, &par, &err) < 0) {
        mx_cli_err("image", "%s", err.msg);
        status = 2;
        goto done;
    }
    struct mx_sd_hires hr;
    mx_sd_hires_default(&hr);
    if (from_png && mx_sd_hires_from_infotext(&png_info, &hr, &err) < 0) {
        mx_cli_err("image", "--from-png %s: %s", from_png, err.msg);
        status = 2;
        goto done;
    }
    if (hires_given) {
        if (init) {
            mx_cli_err("image", "the hires fix (--hires-*, --denoise) is for txt2img, not with "
                       "--init-img (use --strength there)");
            status = 2;
            goto done;
        }
        hr.enabled = true;
        if ((hires_scale_s && parse_float("--hires-scale", hires_scale_s, 1, 8, &hr.scale) < 0) ||
            (denoise_s && parse_float("--denoise", denoise_s, 0, 1, &hr.strength) < 0)) {
            status = 2;
            goto done;
        }
        if (hires_w || hires_h) {
            hr.width = (int)hires_w;
            hr.height = (int)hires_h;
        }
        if (hires_steps >= 0)
            hr.steps = (int)hires_steps;
        if (upscaler && mx_sd_upscaler_parse(upscaler, &hr.upscaler, &err) < 0) {
            mx_cli_err("image", "--hires-upscaler: %s", err.msg);
            status = 2;
            goto done;
        }
    }
    if (mx_sd_hires_check(p, &par, &hr, &err) < 0) {
        mx_cli_err("image", "%s", err.msg);
        status = 2;
        goto done;
    }
    int out_w = par.width, out_h = par.height;
    if (hr.enabled) {
        int uw, uh;
        mx_sd_hires_sizes(&hr, par.width, par.height, &uw, &uh, &out_w, &out_h, &err);
    }
    if ((taesd || preview_every) && !want_preview) {
        mx_cli_err("image", "--taesd and --preview-every go with --preview");
        status = 2;
        goto done;
    }
    if (want_preview) {
        if (!isatty(STDOUT_FILENO) || !isatty(STDIN_FILENO)) {
            mx_cli_err("image", "--preview draws in a terminal: stdin and stdout must be one");
            status = 2;
            goto done;
        }
        char found[4096];
        const char *tf = taesd;
        /* SDXL latents have their own TAESD (taesdxl) and linear factors */
        bool xl = mx_sd_pipeline_model(p)->family == MX_SD_FAMILY_SDXL;
        if (!tf && mx_discover_taesd(getenv("HOME"), model, xl, found, sizeof found) == 0)
            tf = found;
        prev.w = out_w;
        prev.h = out_h;
        if (mx_sd_preview_new(be, xl ? MX_SD_PREVIEW_SDXL : MX_SD_PREVIEW_SD1, tf,
                              (int)preview_every, &prev.pv, &err) < 0) {
            mx_cli_err("image", "--taesd: %s", err.msg);
            goto done;
        }
        mx_gfx_detect(MX_GFX_AUTO, 0, &prev.g, NULL);
        if (prev.g.mode == MX_GFX_NONE) {
            mx_cli_err("image", "--preview: this terminal shows no images (%s)", prev.g.why);
            status = 2;
            goto done;
        }
        /* half the screen's width, all its height but the progress and prompt lines */
        prev.box_cols = MX_MAX(prev.g.cols / 2, 16);
        prev.box_rows = MX_MAX(prev.g.rows - 3, 4);
        if (!o.quiet)
            fprintf(stderr, "mixel image: preview: %s%s%s\n", mx_sd_preview_kind(prev.pv),
                    tf ? " " : " (no TAESD decoder found: --taesd FILE)", tf ? mx_safe(tf) : "");
    }
    char hash[16] = "";
    if (mx_sd_model_hash(model, hash, &err) < 0) { /* A1111's "Model hash": not fatal */
        fprintf(stderr, "mixel image: warning: model hash: %s\n", mx_safe(err.msg));
        hash[0] = '\0';
        memset(&err, 0, sizeof err);
    }
    if (!o.quiet)
        fprintf(stderr, "mixel image: %s (%s, %s-prediction) on %s; %dx%d, %d steps, %s, %s, "
                "cfg %g, seed %llu, rng %s\n", mx_safe(model), mx_sd_family_name(m->family),
                mx_sd_pred_name(m->prediction), mx_backend_name(be), par.width, par.height,
                par.steps, mx_sd_sampler_name(par.sampler), mx_sd_schedule_name(par.scheduler),
                (double)par.cfg, (unsigned long long)seed, mx_sd_rng_name(par.rng));
    if (hr.enabled && !o.quiet)
        fprintf(stderr, "mixel image: hires fix to %dx%d: %s, %d steps, denoising %g\n", out_w,
                out_h, mx_sd_upscaler_a1111_name(hr.upscaler), hr.steps ? hr.steps : par.steps,
                (double)hr.strength);
    /* -b is stable-diffusion.cpp's batch (no grid); --batch-count/--batch-size are A1111's */
    const bool a1111_batch = batch_count > 0 || batch_size > 1;
    const int n_images = (int)((batch_count ? batch_count : batch) * batch_size);
    struct bar bar = {.quiet = o.quiet, .tty = isatty(2), .n_images = n_images,
                      .pv = want_preview ? &prev : NULL};
    if (!out)
        out = "output.png";
    bool grid = n_images > 1 && a1111_batch && !no_grid;
    if (grid && !(made = calloc((size_t)n_images, sizeof *made))) {
        mx_cli_err("image", "out of memory");
        goto done;
    }
    char *first_text = NULL; /* the grid's parameters: the first image's */
    for (int i = 0; i < n_images; i++) {
        struct mx_image img = {0};
        bar.image = i;
        bar.last_step = 0;
        bar.sample_s = 0;
        if (want_preview && preview_area(&prev) < 0 && !prev.failed) {
            prev.failed = true;
            fprintf(stderr, "mixel image: preview: the terminal did not say where the cursor "
                    "is: no preview\n");
        }
        double t_img = mx_time_s();
        int rc = mx_sd_generate_hires(p, &par, &hr, i, &img, on_progress, &bar, &err);
        t_img = mx_time_s() - t_img;
        if (rc < 0) {
            if (bar.tty)
                fputc('\n', stderr);
            mx_cli_err("image", "%s", err.msg);
            free(first_text);
            goto done;
        }
        if (want_preview && prev.rows) { /* the final picture in the preview's place */
            if (show && preview_draw(&prev, &img, &err) < 0)
                mx_cli_err("image", "--show: %s", err.msg);
            if (bar.tty)
                fputc('\n', stderr);
        }
        const struct mx_sd_progress *lp = &bar.last;
        double sample_s = bar.sample_s;
        if (!o.quiet)
            fprintf(stderr, "mixel image: text encoder %.2f s, sampling %.2f s (%.2f s/step), "
                    "VAE decode %.2f s, total %.2f s\n", lp->text_s, sample_s,
                    lp->steps ? sample_s / lp->steps : 0.0, lp->decode_s, t_img);
        if (want_preview && prev.pv && !o.quiet)
            fprintf(stderr, "mixel image: preview: %d %s previews, %.3f s (%.1f%% of sampling)"
                    "\n", mx_sd_preview_count(prev.pv), mx_sd_preview_kind(prev.pv),
                    mx_sd_preview_spent_s(prev.pv),
                    sample_s > 0 ? 100.0 * mx_sd_preview_spent_s(prev.pv) / sample_s : 0.0);
        char name[4096];
        out_name(out, i, name, sizeof name);
        char *text = NULL;
        char lh[1024], th[1024];
        rc = mx_sd_params_to_infotext_full(&par, &hr, seed + (uint64_t)i, model, hash,
                                           mx_sd_pipeline_lora_hashes(p, lh, sizeof lh),
                                           mx_sd_pipeline_ti_hashes(p, th, sizeof th), &text,
                                           &err);
        if (rc == 0)
            rc = mx_image_save_png_text(&img, name, "parameters", text, &err);
        if (rc == 0 && i == 0)
            first_text = text;
        else
            free(text);
        if (grid && rc == 0) {
            made[n_made++] = img;
            memset(&img, 0, sizeof img);
        }
        mx_image_free(&img);
        if (rc < 0) {
            mx_cli_err("image", "%s", err.msg);
            free(first_text);
            goto done;
        }
        printf("%s\n", mx_safe(name));
        fflush(stdout);
        if (show && !(want_preview && prev.rows)) {
            char *sargv[] = {"show", name, NULL};
            mx_cmd_show(2, sargv);
        }
    }
    if (grid) { /* A1111's contact sheet: out_grid.png with the first image's parameters */
        struct mx_image sheet;
        char name[4096], base[4096];
        const char *dot = strrchr(out, '.'), *slash = strrchr(out, '/');
        if (!dot || (slash && dot < slash))
            snprintf(base, sizeof base, "%s_grid", out);
        else
            snprintf(base, sizeof base, "%.*s_grid%s", (int)(dot - out), out, dot);
        snprintf(name, sizeof name, "%s", base);
        int rc = mx_image_grid(made, n_made, 0, &sheet);
        if (rc < 0)
            rc = mx_err_set(&err, rc, "grid of %d images: cannot be made", n_made);
        else
            rc = mx_image_save_png_text(&sheet, name, "parameters", first_text, &err);
        mx_image_free(&sheet);
        free(first_text);
        first_text = NULL;
        if (rc < 0) {
            mx_cli_err("image", "%s", err.msg);
            goto done;
        }
        printf("%s\n", mx_safe(name));
        fflush(stdout);
        if (show) {
            char *sargv[] = {"show", name, NULL};
            mx_cmd_show(2, sargv);
        }
    }
    free(first_text);
    if (!o.quiet) {
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        fprintf(stderr, "mixel image: %d image%s in %.1f s, peak memory %.2f GiB\n", n_images,
                n_images == 1 ? "" : "s", mx_time_s() - t_start,
                (double)ru.ru_maxrss / (1024.0 * 1024.0));
    }
    status = 0;
done:
    for (int i = 0; i < n_made; i++)
        mx_image_free(&made[i]);
    free(made);
    mx_sd_preview_free(prev.pv);
    mx_image_free(&init_img);
    mx_image_free(&mask_img);
    mx_sd_infotext_free(&png_info);
    mx_sd_pipeline_close(p);
    mx_discover_lora_dirs_free(lora_dirs);
    mx_discover_lora_dirs_free(emb_dirs);
    mx_backend_free(be);
    return status;
}
