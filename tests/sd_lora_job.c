/* sd_lora_job.c - test helper for tests/sd_lora.sh: the chat's /image path (app/image_job.h:
 * the request parsed from the words of the command, run on a worker) with LoRAs, on one engine
 * kept open across the jobs, as the chat does:
 *   1. --lora LORA:0.8        2. no LoRA (the stored weights back)
 *   3. <lora:style:0.8> in the prompt (style.safetensors in the LoRA folder beside CKPT)
 *   4. --lora LORA:0.8 again (redone after the undo)
 * Each PNG's path goes to stdout, one a line, in that order; the shell compares the pixels.
 * Exit 1 (with the reason) when a job fails or an infotext lacks "Lora hashes" where a LoRA ran.
 *
 *   sd_lora_job CKPT LORA OUT_DIR
 */
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/image_job.h"
#include "app/worker.h"

struct job_args {
    struct mx_sd_engine *e;
    struct mx_image_req *req;
    struct mx_image_result *res;
};

static void job_fn(struct mx_job *job, void *ud) {
    struct job_args *a = ud;
    mx_image_job_run(job, a->e, a->req, a->res);
}

/* Runs one /image command line; 0 with *res filled, or prints the error and returns 1. */
static int run(struct mx_worker *w, struct mx_sd_engine *e, const char *line, const char *ckpt,
               const char *out_dir, struct mx_image_result *res) {
    struct mx_image_req req;
    struct mx_err err = {0};
    if (mx_image_req_parse(line, &req, &err) != 0) {
        fprintf(stderr, "sd_lora_job: %s: %s\n", line, err.msg);
        return 1;
    }
    req.ckpt = strdup(ckpt);
    req.out_dir = strdup(out_dir);
    req.device = strdup("cpu");
    req.threads = 2;
    struct job_args a = {e, &req, res};
    int code = -1;
    char msg[512] = "";
    if (mx_worker_start(w, job_fn, &a) != 0)
        return 1;
    for (bool done = false; !done;) {
        struct pollfd p = {.fd = mx_worker_wake_fd(w), .events = POLLIN};
        if (poll(&p, 1, 300000) <= 0) {
            fprintf(stderr, "sd_lora_job: %s: no event in 300 s\n", line);
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
    mx_image_req_free(&req);
    if (code != 0) {
        fprintf(stderr, "sd_lora_job: %s: %s\n", line, msg);
        return 1;
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: sd_lora_job CKPT LORA OUT_DIR\n");
        return 2;
    }
    const char *p = "a red lighthouse by the sea -W 64 -H 64 --steps 2 --cfg 5 --seed 3";
    char lines[4][1024];
    snprintf(lines[0], sizeof lines[0], "%s --lora '%s:0.8'", p, argv[2]);
    snprintf(lines[1], sizeof lines[1], "%s", p);
    snprintf(lines[2], sizeof lines[2], "%s '<lora:style:0.8>'", p);
    snprintf(lines[3], sizeof lines[3], "%s --lora '%s:0.8'", p, argv[2]);
    struct mx_worker *w;
    struct mx_sd_engine *e;
    if (mx_worker_new(&w) != 0 || mx_sd_engine_new(&e) != 0)
        return 1;
    int rc = 0;
    for (int i = 0; i < 4 && rc == 0; i++) {
        struct mx_image_result res = {0};
        rc = run(w, e, lines[i], argv[1], argv[3], &res);
        if (rc == 0 && (i != 1) != (strstr(res.infotext, "Lora hashes: ") != NULL)) {
            fprintf(stderr, "sd_lora_job: job %d: infotext %s Lora hashes: %s\n", i + 1,
                    i != 1 ? "lacks" : "has", res.infotext);
            rc = 1;
        }
        if (rc == 0)
            printf("%s\n", res.path);
        mx_image_result_free(&res);
    }
    mx_sd_engine_free(e);
    mx_worker_free(w);
    return rc;
}
