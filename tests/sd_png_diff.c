/* sd_png_diff.c - pixel difference of two images of the same size, for the Stable Diffusion
 * reference checks (tests/sd_refs.sh): prints "mean M max X p99 P" over every RGB channel value.
 * Exit 0 when compared, 1 when a file is unreadable or the sizes differ (with the reason). */
#include <stdio.h>
#include <stdlib.h>

#include "core/image/image.h"

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: sd_png_diff A.png B.png\n");
        return 2;
    }
    struct mx_image a = {0}, b = {0};
    struct mx_err err = {0};
    if (mx_image_load(argv[1], &a, &err) < 0 || mx_image_load(argv[2], &b, &err) < 0) {
        fprintf(stderr, "sd_png_diff: %s\n", err.msg);
        return 1;
    }
    if (a.w != b.w || a.h != b.h) {
        fprintf(stderr, "sd_png_diff: sizes differ: %dx%d vs %dx%d\n", a.w, a.h, b.w, b.h);
        return 1;
    }
    size_t n = (size_t)a.w * (size_t)a.h * 3, hist[256] = {0};
    double sum = 0;
    int max = 0;
    for (size_t i = 0; i < n; i++) {
        int d = abs((int)a.rgb[i] - (int)b.rgb[i]);
        sum += d;
        hist[d]++;
        if (d > max)
            max = d;
    }
    size_t seen = 0, p99 = 0;
    for (int d = 0; d < 256; d++) { /* the 99th percentile: the least d covering 99 % */
        seen += hist[d];
        if (seen * 100 >= n * 99) {
            p99 = (size_t)d;
            break;
        }
    }
    printf("mean %.4f max %d p99 %zu\n", sum / (double)n, max, p99);
    mx_image_free(&a);
    mx_image_free(&b);
    return 0;
}
