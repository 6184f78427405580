/* bench_kernels.c - throughput of the CPU backend's matmul and attention kernels (not a test).
 *
 * Decode: one token through an n_out x n_in weight of each type, reported as weight bytes read
 * per second (the number that bounds generation speed). Prefill: a 512-column batch, in GFLOP/s.
 * Both with the fast kernels and with the scalar ones. Attention: 512 queries over a cache.
 * Wall time and process CPU time are both printed: on a shared machine CPU time / threads is the
 * better estimate of what an idle machine would do.
 *
 * usage: bench_kernels [threads] [n_in] [n_out] [level of the second set: 0 scalar, 1 avx2]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/quant.h"
#include "core/util.h"
#include "kernels/backend.h"
#include "kernels/cpu/cpu.h"

static double cpu_s(void) {
    return (double)clock() / CLOCKS_PER_SEC;
}

static void *xmalloc(size_t n) {
    void *p = malloc(n);
    if (!p) {
        fprintf(stderr, "out of memory (%zu bytes)\n", n);
        exit(1);
    }
    return p;
}

static void bench_matmul(struct mx_backend *be, enum mx_type type, int64_t n_in, int64_t n_out,
                         int64_t T, int reps, const char *label) {
    struct mx_tensor w, x, y;
    if (mx_tensor_init(&w, type, n_in, n_out, 1, 1) < 0)
        return;
    mx_tensor_init(&x, MX_TYPE_F32, n_in, T, 1, 1);
    mx_tensor_init(&y, MX_TYPE_F32, n_out, T, 1, 1);
    w.data = xmalloc(mx_tensor_nbytes(&w));
    x.data = xmalloc(mx_tensor_nbytes(&x));
    y.data = xmalloc(mx_tensor_nbytes(&y));
    float *row = xmalloc((size_t)n_in * sizeof(float));
    uint64_t s = 1;
    for (int64_t r = 0; r < n_out; r++) {
        for (int64_t i = 0; i < n_in; i++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            row[i] = (float)((int64_t)(s >> 40) - (1 << 23)) / (float)(1 << 23);
        }
        mx_quantize_row(type, row, (char *)w.data + (size_t)r * w.nb[1], n_in);
    }
    for (int64_t i = 0; i < n_in * T; i++)
        ((float *)x.data)[i] = row[i % n_in];
    mx_op_matmul(be, &y, &w, &x); /* warm up: scratch, caches */
    double t0 = mx_time_s(), c0 = cpu_s();
    for (int i = 0; i < reps; i++)
        mx_op_matmul(be, &y, &w, &x);
    double wall = (mx_time_s() - t0) / reps, cpu = (cpu_s() - c0) / reps;
    double bytes = (double)mx_tensor_nbytes(&w), flop = 2.0 * (double)n_in * n_out * T;
    int nth = mx_backend_cpu_n_threads(be);
    if (T == 1)
        printf("  %-6s %-7s decode  %8.3f ms  %6.2f GB/s wall  %6.2f GB/s by cpu time\n",
               mx_type_name(type), label, wall * 1e3, bytes / wall / 1e9,
               bytes / (cpu / nth) / 1e9);
    else
        printf("  %-6s %-7s T=%-4lld %8.3f ms  %6.1f GFLOP/s wall  %6.1f by cpu time\n",
               mx_type_name(type), label, (long long)T, wall * 1e3, flop / wall / 1e9,
               flop / (cpu / nth) / 1e9);
    free(w.data);
    free(x.data);
    free(y.data);
    free(row);
}

int main(int argc, char **argv) {
    int nth = argc > 1 ? atoi(argv[1]) : 2;
    int64_t n_in = argc > 2 ? atoll(argv[2]) : 4096, n_out = argc > 3 ? atoll(argv[3]) : 4096;
    struct mx_err err = {0};
    struct mx_backend *be = mx_backend_cpu_new(nth, &err);
    struct mx_backend *bs = mx_backend_cpu_new(nth, &err);
    if (!be || !bs) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    mx_cpu_kernels_init(&mx_cpu_of(bs)->kern, argc > 4 ? atoi(argv[4]) : MX_CPU_SCALAR);
    printf("threads %d, W %lld x %lld, kernels '%s' vs '%s'\n", nth, (long long)n_in,
           (long long)n_out, mx_cpu_of(be)->kern.name, mx_cpu_of(bs)->kern.name);
    enum mx_type types[] = {MX_TYPE_F32, MX_TYPE_F16, MX_TYPE_BF16, MX_TYPE_Q8_0, MX_TYPE_Q4_0,
                            MX_TYPE_Q4_K, MX_TYPE_Q5_K, MX_TYPE_Q6_K};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        bench_matmul(be, types[i], n_in, n_out, 1, 20, "fast");
        bench_matmul(bs, types[i], n_in, n_out, 1, 3, mx_cpu_of(bs)->kern.name);
    }
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        bench_matmul(be, types[i], n_in, n_out / 4, 512, 2, "sgemm");
    mx_backend_free(be);
    mx_backend_free(bs);
    return 0;
}
