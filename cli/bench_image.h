/* bench_image.h - the image part of `mixel bench` (cli/ only: it prints). */
#ifndef MX_CLI_BENCH_IMAGE_H
#define MX_CLI_BENCH_IMAGE_H

#include <stdbool.h>

#include <stdint.h>

#include "cli/opts.h"

/* Median of v[0..n) (sorts v; 0 for n <= 0), and the process's peak RSS in bytes (0 unknown):
 * shared by the LLM and image parts of `mixel bench` (cmd_bench.c). */
double mx_bench_median(double *v, int n);
uint64_t mx_bench_peak_rss(void);

/* Runs txt2img on ckpt at w x h for `steps` euler steps with cfg 7 (so two UNet evaluations per
 * step, as the peer's figures), reps times after nothing else was loaded, and prints the text
 * encoder time, seconds per step, VAE decode time and the process's peak RSS as a table or one
 * JSON object. Returns the exit status (0, 1 runtime error). */
int mx_bench_image(const struct mx_cli_opts *o, const char *ckpt, int w, int h, int steps,
                   int reps, bool json);

#endif
