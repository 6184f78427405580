/* cuda_pairs.h - tensors held on both backends by the CUDA tests (test_cuda_ops.c,
 * test_cuda_kernels.c): the host copy the CPU backend computes on and the device copy the CUDA
 * backend does. Included by one .c file per program, after it declares `gpu` (the CUDA
 * backend) and `rng` (its random state); static definitions, no other state. */
#ifndef MX_TESTS_CUDA_PAIRS_H
#define MX_TESTS_CUDA_PAIRS_H

/* A tensor on both backends: h in host memory (the CPU backend's), d in VRAM. */
struct pair {
    struct mx_tensor h, d;
    struct mx_buf *buf;
};

#define MAX_PAIRS 64
static struct pair *pairs[MAX_PAIRS];
static int n_pairs;

static struct pair *mkp(enum mx_type type, int64_t ne0, int64_t ne1, int64_t ne2, int64_t ne3) {
    struct pair *p = calloc(1, sizeof *p);
    assert_non_null(p);
    assert_int_equal(mx_tensor_init(&p->h, type, ne0, ne1, ne2, ne3), 0);
    size_t n = mx_tensor_nbytes(&p->h);
    p->h.data = calloc(1, n);
    assert_non_null(p->h.data);
    struct mx_err err = {0};
    assert_int_equal(mx_buf_alloc(gpu, n, &p->buf, &err), 0);
    p->d = p->h;
    p->d.buf = p->buf;
    p->d.data = p->buf->base;
    assert_true(n_pairs < MAX_PAIRS);
    pairs[n_pairs++] = p;
    return p;
}

static void free_pairs(void) {
    for (int i = 0; i < n_pairs; i++) {
        mx_buf_free(pairs[i]->buf);
        free(pairs[i]->h.data);
        free(pairs[i]);
    }
    n_pairs = 0;
}

/* the host values to the device */
static void up(struct pair *p) {
    assert_int_equal(mx_tensor_set(gpu, &p->d, p->h.data, 0, mx_tensor_nbytes(&p->h)), 0);
}

/* random weights of a type: F32 values quantized on the host */
static struct pair *rnd_w(enum mx_type type, int64_t ne0, int64_t ne1, int64_t ne2) {
    struct pair *p = mkp(type, ne0, ne1, ne2, 1);
    int64_t rows = ne1 * ne2;
    float *row = malloc((size_t)ne0 * sizeof *row);
    assert_non_null(row);
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t i = 0; i < ne0; i++)
            row[i] = mx_test_randf(&rng);
        assert_int_equal(mx_quantize_row(type, row, (char *)p->h.data + r * p->h.nb[1], ne0), 0);
    }
    free(row);
    up(p);
    return p;
}

static struct pair *ids_p(int64_t ne0, int64_t ne1, const int32_t *v) {
    struct pair *p = mkp(MX_TYPE_I32, ne0, ne1, 1, 1);
    memcpy(p->h.data, v, (size_t)(ne0 * ne1) * 4);
    up(p);
    return p;
}

#endif
