/* bench_image.c - `mixel bench -d CKPT`: Stable Diffusion speed on this machine in the shape of
 * stable-diffusion.cpp's own log figures (../shared/refs/sd/README.md "Performance anchors"):
 * text encoder seconds, seconds per sampling step (cond + uncond UNet evaluations), VAE decode
 * seconds, and peak resident memory. Medians over the repetitions; the first repetition also
 * faults the mapped weights in, so with -r 1 the step figure includes that (say -r 2 or more for
 * a warm figure: the first run is then a warm-up and not counted).
 */
#include "cli/bench_image.h"

#include <stdio.h>
#include <stdlib.h>

#include "cli/cmd.h"
#include "core/base/util.h"
#include "core/diffusion/pipeline.h"
#include "core/diffusion/rng.h"
#include "core/diffusion/sampler.h"
#include "core/diffusion/schedule.h"
#include "kernels/devices.h"

struct bench_rec {
    double step_s[64]; /* each step's seconds in this run */
    int n_steps;
    struct mx_sd_progress last;
};

/* Records every step's time. */
static int record(void *ud, const struct mx_sd_progress *p) {
    struct bench_rec *r = ud;
    if (p->phase == MX_SD_PHASE_SAMPLE && p->step > r->n_steps && r->n_steps < 64)
        r->step_s[r->n_steps++] = p->step_s;
    r->last = *p;
    return 0;
}

int mx_bench_image(const struct mx_cli_opts *o, const char *ckpt, int w, int h, int steps,
                   int reps, bool json) {
    struct mx_err err = {0};
    int status = 1;
    struct mx_sd_pipeline *p = NULL;
    if (!(ckpt = mx_cli_sd_model_path("bench", ckpt)))
        return 1;
    double open_t0 = mx_time_s();
    struct mx_backend *be = mx_device_open(o->s.device, o->s.threads, &err);
    if (!be) {
        mx_cli_err("bench", "%s", err.msg);
        return 1;
    }
    if (mx_sd_pipeline_open(be, ckpt, NULL, &p, &err) < 0) {
        mx_cli_err("bench", "%s", err.msg);
        goto done;
    }
    double open_s = mx_time_s() - open_t0;
    struct mx_sd_params par;
    mx_sd_params_default(&par, p);
    par.prompt = "a photo of a cat";
    par.width = w;
    par.height = h;
    par.steps = steps;
    par.sampler = MX_SD_SAMPLER_EULER; /* cfg 7 and rng cuda are the defaults */
    par.scheduler = MX_SD_SCHED_DISCRETE;
    par.seed = 42;
    if (steps > 64)
        steps = par.steps = 64;
    double text[100], step[100 * 64], dec[100];
    int n_runs = 0, n_step = 0;
    int first = reps > 1 ? 1 : 0; /* with repetitions, run 0 warms up and is not counted */
    for (int r = 0; r < reps && r < 100; r++) {
        struct bench_rec rec = {0};
        struct mx_image img = {0};
        if (mx_sd_generate(p, &par, 0, &img, record, &rec, &err) < 0) {
            mx_cli_err("bench", "%s", err.msg);
            goto done;
        }
        mx_image_free(&img);
        if (r < first)
            continue;
        text[n_runs] = rec.last.text_s;
        dec[n_runs++] = rec.last.decode_s;
        for (int i = 0; i < rec.n_steps; i++)
            step[n_step++] = rec.step_s[i];
    }
    double rss_gib = (double)mx_bench_peak_rss() / (1024.0 * 1024.0 * 1024.0);
    double t_text = mx_bench_median(text, n_runs), t_step = mx_bench_median(step, n_step),
           t_dec = mx_bench_median(dec, n_runs);
    const struct mx_sd_model *m = mx_sd_pipeline_model(p);
    int threads = mx_backend_cpu_n_threads(be);
    if (json) {
        printf("{\"image\": {\"model\": \"%s\", \"family\": \"%s\", \"device\": \"%s\", "
               "\"threads\": %d, \"width\": %d, \"height\": %d, \"steps\": %d, \"cfg\": 7, "
               "\"runs\": %d, \"load_s\": %.3f, \"text_encoder_s\": %.3f, \"s_per_step\": %.3f, "
               "\"vae_decode_s\": %.3f, \"peak_rss_gib\": %.3f}}\n",
               mx_safe(ckpt), mx_sd_family_name(m->family), mx_backend_name(be), threads, w, h,
               steps, n_runs, open_s, t_text, t_step, t_dec, rss_gib);
    } else {
        printf("image model   %s (%s, %s weights %lld M)\n", mx_safe(ckpt),
               mx_sd_family_name(m->family), mx_backend_name(be), (long long)(m->n_params / 1000000));
        printf("device        %s, %d threads\n", mx_backend_name(be), threads);
        printf("size          %dx%d, %d euler steps, cfg 7 (cond + uncond per step), %d run%s "
               "counted%s\n", w, h, steps, n_runs, n_runs == 1 ? "" : "s",
               first ? " after a warm-up" : " (cold: includes faulting the weights in)");
        printf("load          %8.2f s\n", open_s);
        printf("text encoder  %8.2f s   (prompt and negative prompt)\n", t_text);
        printf("sampling      %8.2f s/step (median of %d steps)\n", t_step, n_step);
        printf("VAE decode    %8.2f s\n", t_dec);
        printf("peak RSS      %8.2f GiB\n", rss_gib);
    }
    status = 0;
done:
    mx_sd_pipeline_close(p);
    mx_backend_free(be);
    return status;
}
