/* sd_preview_tool.c - helper for the hires/grid/preview shell tests (tests/sd_preview*.sh,
 * sd_grid.sh, sd_hires.sh):
 *   taesd-write FILE raw|diffusers f16|f32 SEED    a random-weight TAESD decoder (taesd_write.h)
 *   taesd-decode FILE LW LH SEED LATENT.f32 OUT.f32
 *                                  a random latent (written), decoded by mixel's TAESD (written)
 *   resample IN.png W H lanczos|nearest OUT.png    mixel's Pillow-style resize
 *   tiles GRID.png ROWS COLS A.png B.png ...       every tile of the grid equals its PNG, the
 *                                                  cells after the last are black
 *   job CKPT OUT_DIR LINE          one chat /image command line through app/image_job.h (the
 *                                  worker, the engine): prints the result's path, WxH, image
 *                                  count and infotext
 * Exit 0 on success, 1 with a message on stderr otherwise. */
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/image_job.h"
#include "app/worker.h"
#include "core/diffusion/taesd.h"
#include "core/image/image.h"
#include "core/image/resample.h"
#include "kernels/backend.h"
#include "tests/taesd_write.h"

/* Writes n floats to path. */
static int write_f32(const char *path, const float *v, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(v, sizeof *v, n, f) != n) {
        if (f)
            fclose(f);
        return -1;
    }
    return fclose(f);
}

static int taesd_decode(char **argv) {
    int lw = atoi(argv[3]), lh = atoi(argv[4]);
    uint64_t s = strtoull(argv[5], NULL, 10);
    struct mx_err err = {0};
    struct mx_backend *be = mx_backend_cpu_new(2, &err);
    struct mx_sd_taesd *t = NULL;
    if (!be || mx_sd_taesd_open(be, argv[2], &t, &err) < 0) {
        fprintf(stderr, "taesd-decode: %s\n", err.msg);
        mx_backend_free(be);
        return 1;
    }
    size_t nz = (size_t)4 * (size_t)lw * (size_t)lh, no = (size_t)3 * 64 * (size_t)lw * (size_t)lh;
    float *z = malloc(nz * sizeof *z), *o = malloc(no * sizeof *o);
    for (size_t i = 0; z && i < nz; i++)
        z[i] = 1.5f * taesd_test_normal(&s); /* latents of SD run to about +-4 */
    int rc = z && o ? mx_sd_taesd_decode(t, z, lw, lh, o, &err) : MX_ENOMEM;
    if (rc == 0 && (write_f32(argv[6], z, nz) || write_f32(argv[7], o, no)))
        rc = mx_err_set(&err, MX_EIO, "cannot write %s / %s", argv[6], argv[7]);
    if (rc < 0)
        fprintf(stderr, "taesd-decode: %s\n", mx_err_msg(&err, rc));
    free(z);
    free(o);
    mx_sd_taesd_free(t);
    mx_backend_free(be);
    return rc < 0;
}

static int resample(char **argv) {
    struct mx_err err = {0};
    struct mx_image in, out;
    if (mx_image_load(argv[2], &in, &err) < 0) {
        fprintf(stderr, "resample: %s\n", err.msg);
        return 1;
    }
    int rc = mx_image_resample(&in, atoi(argv[3]), atoi(argv[4]),
                               !strcmp(argv[5], "nearest") ? MX_RESAMPLE_NEAREST
                                                           : MX_RESAMPLE_LANCZOS, &out);
    mx_image_free(&in);
    if (rc == 0) {
        rc = mx_image_save_png(&out, argv[6], &err);
        mx_image_free(&out);
    }
    if (rc < 0)
        fprintf(stderr, "resample: %s\n", mx_err_msg(&err, rc));
    return rc < 0;
}

static int tiles(int argc, char **argv) {
    struct mx_err err = {0};
    struct mx_image g;
    int rows = atoi(argv[3]), cols = atoi(argv[4]), n = argc - 5, bad = 0;
    if (mx_image_load(argv[2], &g, &err) < 0) {
        fprintf(stderr, "tiles: %s\n", err.msg);
        return 1;
    }
    int w = 0, h = 0;
    for (int i = 0; i < n && !bad; i++) {
        struct mx_image t;
        if (mx_image_load(argv[5 + i], &t, &err) < 0) {
            fprintf(stderr, "tiles: %s\n", err.msg);
            bad = 1;
            break;
        }
        if (i == 0) {
            w = t.w;
            h = t.h;
            if (g.w != cols * w || g.h != rows * h) {
                fprintf(stderr, "tiles: grid is %dx%d, expected %dx%d (%d x %d tiles of %dx%d)\n",
                        g.w, g.h, cols * w, rows * h, rows, cols, w, h);
                bad = 1;
            }
        }
        int x0 = i % cols * w, y0 = i / cols * h;
        for (int y = 0; y < h && !bad; y++)
            if (memcmp(g.rgb + ((size_t)(y0 + y) * (size_t)g.w + (size_t)x0) * 3,
                       t.rgb + (size_t)y * (size_t)w * 3, (size_t)w * 3)) {
                fprintf(stderr, "tiles: tile %d (%s) differs from the grid at row %d\n", i,
                        argv[5 + i], y);
                bad = 1;
            }
        mx_image_free(&t);
    }
    for (int i = n; i < rows * cols && !bad; i++) /* the empty cells: black */
        for (int y = 0; y < h; y++)
            for (int x = 0; x < 3 * w; x++)
                if (g.rgb[((size_t)(i / cols * h + y) * (size_t)g.w + (size_t)(i % cols * w)) * 3 +
                          (size_t)x]) {
                    fprintf(stderr, "tiles: empty cell %d is not black\n", i);
                    bad = 1;
                    y = h;
                    break;
                }
    mx_image_free(&g);
    if (!bad)
        printf("tiles: %d images in a %dx%d grid of %dx%d tiles match\n", n, rows, cols, w, h);
    return bad;
}

struct job_args {
    struct mx_sd_engine *e;
    struct mx_image_req *req;
    struct mx_image_result *res;
};

static void job_fn(struct mx_job *job, void *ud) {
    struct job_args *a = ud;
    mx_image_job_run(job, a->e, a->req, a->res);
}

static int job(char **argv) {
    struct mx_image_req req;
    struct mx_err err = {0};
    if (mx_image_req_parse(argv[4], &req, &err) != 0) {
        fprintf(stderr, "job: %s\n", err.msg);
        return 1;
    }
    req.ckpt = strdup(argv[2]);
    req.out_dir = strdup(argv[3]);
    req.device = strdup("cpu");
    req.threads = 2;
    struct mx_worker *w;
    struct mx_sd_engine *e;
    if (mx_worker_new(&w) != 0 || mx_sd_engine_new(&e) != 0)
        return 1;
    struct mx_image_result res = {0};
    struct job_args a = {e, &req, &res};
    int code = -1;
    char msg[512] = "";
    if (mx_worker_start(w, job_fn, &a) != 0)
        return 1;
    for (bool done = false; !done;) {
        struct pollfd p = {.fd = mx_worker_wake_fd(w), .events = POLLIN};
        if (poll(&p, 1, 600000) <= 0) {
            fprintf(stderr, "job: no event in 600 s\n");
            return 1;
        }
        struct mx_event ev;
        while (mx_worker_poll(w, &ev)) {
            if (ev.kind == MX_EV_DONE) {
                code = ev.code;
                snprintf(msg, sizeof msg, "%s", ev.text ? ev.text : "");
                done = true;
            }
            free(ev.text);
        }
    }
    while (mx_worker_busy(w))
        sched_yield();
    if (code == 0)
        printf("%s\n%dx%d\n%d\n%s\n", res.path, res.w, res.h, res.n_images, res.infotext);
    else
        fprintf(stderr, "job: %s\n", msg);
    mx_image_result_free(&res);
    mx_image_req_free(&req);
    mx_sd_engine_free(e);
    mx_worker_free(w);
    return code != 0;
}

int main(int argc, char **argv) {
    if (argc == 5 && !strcmp(argv[1], "job"))
        return job(argv);
    if (argc == 6 && !strcmp(argv[1], "taesd-write")) {
        struct mx_err err = {0};
        int rc = taesd_test_write(argv[2], !strcmp(argv[3], "diffusers"), !strcmp(argv[4], "f16"),
                                  strtoull(argv[5], NULL, 10), NULL, NULL, &err);
        if (rc < 0)
            fprintf(stderr, "taesd-write: %s\n", mx_err_msg(&err, rc));
        return rc < 0;
    }
    if (argc == 8 && !strcmp(argv[1], "taesd-decode"))
        return taesd_decode(argv);
    if (argc == 7 && !strcmp(argv[1], "resample"))
        return resample(argv);
    if (argc >= 6 && !strcmp(argv[1], "tiles"))
        return tiles(argc, argv);
    fprintf(stderr, "usage: see the head of tests/sd_preview_tool.c\n");
    return 1;
}
