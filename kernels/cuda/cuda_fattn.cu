/* cuda_fattn.cu - flash attention over the KV cache: one kernel for prefill and decode. A CUDA
 * block takes one KV head, a tile of QT tokens and all the query heads that share that KV head
 * (GQA: R = QT * group query rows read each K/V tile once), walks its cells in tiles of KC
 * loaded into shared memory as f32 (F16 read as half2 pairs, Q8_0 as 4-quant words with the
 * block's scale, F32 as is), scores the R x KC pairs, and keeps an online softmax per row (the
 * running max and sum in shared memory, the output rows in registers, rescaled per tile). The
 * mask is mx_op_attn's: kpos[c] >= 0, kpos[c] <= qpos[t], and the sliding window; sinks join
 * the denominator at the end. For decode at long context (few blocks for the card) the cells
 * are split across blocks (grid.y) that write unnormalized partial rows with their max and
 * sum, and a second kernel combines them (the split-K that ggml's fattn-vec does).
 *
 * Same semantics as cuda_ops.cu's k_attn (kept for head_dim > 256, head_dims not a multiple of
 * 4 and GQA groups larger than a tile); q is rounded in MX_ACT_GGML mode exactly as the CPU
 * rounds it (mx_ref_round_act: F16, or Q8_0 with rint(x * 127 / amax)), so results agree with
 * the CPU within f32 rounding and the exp approximations (~1e-6 relative).
 */
#include "kernels/cuda/cuda_impl.h"
#include "kernels/cuda/cuda_dq.cuh"

#define FA_THREADS 128  /* 4 warps */
#define FA_QVALS 4096   /* f32 values of the query tile (R * head_dim), 16 KiB */
#define FA_MAXR 32      /* rows (query heads x tokens) per block */
#define FA_MAXKC 64     /* cells per KV tile */
#define FA_ACC (FA_QVALS / FA_THREADS) /* output values per thread */

/* full unrolling keeps the output rows in registers (nvcc); the emulator's C++ compiler has no
 * such pragma */
#ifdef __CUDACC__
#define FA_UNROLL _Pragma("unroll")
#else
#define FA_UNROLL
#endif

/* the launch's constants */
struct fa_args {
    float *dst;                 /* F32 [hd, n_head, T] */
    float *part;                /* split runs: [n_split][T * n_head][hd + 2] (acc, m, l) */
    const float *q;             /* F32 [hd, n_head, T] */
    const uint8_t *kc, *vc;     /* cache rows */
    size_t krow, vrow;          /* bytes per cache row */
    const int32_t *qpos, *kpos; /* positions of the tokens and the cells */
    const float *sinks;         /* F32 [n_head] or NULL */
    int64_t n_kv;               /* cells scanned */
    int64_t cells_per_split;    /* a multiple of kc_tile */
    int ktype, vtype;           /* F32, F16 or Q8_0 */
    int T, n_head, group, hd;   /* tokens, query heads, query heads per KV head, head_dim */
    int qt, kc_tile;            /* tokens per block, cells per tile */
    float scale;
    int32_t window;
    int round_q;                /* 1: q rounded to f16, 2: to Q8_0 blocks (ggml's MX_ACT_GGML) */
};

/* 4 consecutive values (element i, a multiple of 4) of a cache row, as f32 */
static __device__ __forceinline__ float4 ld_kv4(int type, const uint8_t *row, int64_t i) {
    if (type == MX_TYPE_F16) {
        const __half2 *h = (const __half2 *)(row + i * 2);
        float2 a = __half22float2(h[0]), b = __half22float2(h[1]);
        return make_float4(a.x, a.y, b.x, b.y);
    }
    if (type == MX_TYPE_Q8_0) {
        const uint8_t *b = row + (i / 32) * 34;
        const uint16_t *w = (const uint16_t *)(b + 2 + i % 32);
        uint32_t v = (uint32_t)w[0] | (uint32_t)w[1] << 16;
        float d = cu_half(b);
        return make_float4(d * (float)(int8_t)(v & 0xff), d * (float)(int8_t)(v >> 8 & 0xff),
                           d * (float)(int8_t)(v >> 16 & 0xff), d * (float)(int8_t)(v >> 24));
    }
    if (type == MX_TYPE_F32) {
        const float *f = (const float *)row + i;
        return make_float4(f[0], f[1], f[2], f[3]);
    }
    return make_float4(cu_dq(type, row, i), cu_dq(type, row, i + 1), cu_dq(type, row, i + 2),
                       cu_dq(type, row, i + 3));
}

/* cells [c0, c0 + n) of KV head g into buf (row stride hd + 1 against bank conflicts), zeros
 * past n */
static __device__ void load_tile(float *buf, int type, const uint8_t *base, size_t row,
                                 int64_t c0, int n, int kct, int g, int hd) {
    const int quads = hd / 4;
    for (int k = threadIdx.x; k < kct * quads; k += FA_THREADS) {
        int c = k / quads, i = (k % quads) * 4;
        float4 v = c < n ? ld_kv4(type, base + (size_t)(c0 + c) * row, (int64_t)g * hd + i)
                         : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        float *o = buf + c * (hd + 1) + i;
        o[0] = v.x;
        o[1] = v.y;
        o[2] = v.z;
        o[3] = v.w;
    }
}

/* grid (n_head_kv * ceil(T / qt), n_split); dynamic shared memory: see fa_smem */
__global__ void __launch_bounds__(FA_THREADS) k_fattn(struct fa_args a) {
    MX_DYN_SHARED(float, sm);
    const int hd = a.hd, group = a.group, kct = a.kc_tile, R = a.qt * group;
    const int n_qtiles = (a.T + a.qt - 1) / a.qt;
    const int g = blockIdx.x / n_qtiles, t0 = (blockIdx.x % n_qtiles) * a.qt;
    float *qs = sm;                          /* [R][hd] */
    float *kv = qs + R * hd;                 /* [kct][hd + 1] */
    float *S = kv + kct * (hd + 1);          /* [R][kct] scores, then weights */
    float *rm = S + R * kct;                 /* [R] running max */
    float *rl = rm + R;                      /* [R] running sum */
    float *ra = rl + R;                      /* [R] this tile's rescale */
    int *kp = (int *)(ra + R);               /* [kct] the tile's cell positions */
    int *qp = kp + kct;                      /* [R] each row's query position */
    const int tid = threadIdx.x, lane = tid % 32, wid = tid / 32;

    /* the query rows: row r = token t0 + r / group, head g * group + r % group */
    for (int k = tid; k < R * hd; k += FA_THREADS) {
        int r = k / hd, i = k % hd, t = t0 + r / group;
        float v = 0.0f;
        if (t < a.T) {
            v = a.q[((int64_t)t * a.n_head + g * group + r % group) * hd + i];
            if (a.round_q == 1)
                v = __half2float(__float2half_rn(v));
        }
        qs[k] = v;
    }
    for (int r = tid; r < R; r += FA_THREADS) {
        int t = t0 + r / group;
        qp[r] = t < a.T ? a.qpos[t] : INT32_MIN; /* a row past T sees no cell */
        rm[r] = -INFINITY;
        rl[r] = 0.0f;
    }
    __syncthreads();
    if (a.round_q == 2) /* ggml rounds q to the Q8_0 cache's blocks: the CPU's quant_block_q8 */
        for (int b = tid; b < R * hd / 32; b += FA_THREADS) {
            float *x = qs + b * 32, amax = 0.0f;
            for (int j = 0; j < 32; j++)
                amax = fmaxf(amax, fabsf(x[j]));
            float d = amax / 127.0f, id = amax != 0.0f ? 127.0f / amax : 0.0f;
            float dh = __half2float(__float2half_rn(d));
            for (int j = 0; j < 32; j++)
                x[j] = rintf(x[j] * id) * dh;
        }

    float acc[FA_ACC];
    FA_UNROLL
    for (int j = 0; j < FA_ACC; j++)
        acc[j] = 0.0f;

    const int64_t cbeg = (int64_t)blockIdx.y * a.cells_per_split;
    int64_t cend = cbeg + a.cells_per_split;
    if (cend > a.n_kv)
        cend = a.n_kv;
    for (int64_t c0 = cbeg; c0 < cend; c0 += kct) {
        const int n = cend - c0 < kct ? (int)(cend - c0) : kct;
        __syncthreads(); /* the previous tile's V and weights are consumed */
        load_tile(kv, a.ktype, a.kc, a.krow, c0, n, kct, g, hd);
        for (int c = tid; c < kct; c += FA_THREADS)
            kp[c] = c < n ? a.kpos[c0 + c] : -1;
        __syncthreads();
        /* scores: pair p = (row p / kct, cell p % kct) */
        for (int p = tid; p < R * kct; p += FA_THREADS) {
            const int r = p / kct, c = p % kct;
            const float *qr = qs + r * hd, *kr = kv + c * (hd + 1);
            float s = 0.0f;
            for (int i = 0; i < hd; i++)
                s += qr[i] * kr[i];
            S[p] = s * a.scale;
        }
        __syncthreads();
        /* online softmax per row: one warp per row, lanes over the cells */
        for (int r = wid; r < R; r += FA_THREADS / 32) {
            const int32_t q = qp[r];
            float mx = -INFINITY;
            for (int c = lane; c < kct; c += 32) {
                const int32_t k = kp[c];
                bool ok = k >= 0 && k <= q && (a.window <= 0 || (int64_t)q - k < a.window);
                float s = ok ? S[r * kct + c] : -INFINITY;
                S[r * kct + c] = s;
                mx = fmaxf(mx, s);
            }
            for (int off = 16; off > 0; off >>= 1)
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, off));
            const float mo = rm[r], mn = fmaxf(mo, mx);
            float sum = 0.0f;
            for (int c = lane; c < kct; c += 32) {
                float s = S[r * kct + c];
                float pw = s == -INFINITY ? 0.0f : __expf(s - mn);
                S[r * kct + c] = pw;
                sum += pw;
            }
            for (int off = 16; off > 0; off >>= 1)
                sum += __shfl_xor_sync(0xffffffffu, sum, off);
            if (lane == 0) {
                const float al = mo == -INFINITY ? 0.0f : __expf(mo - mn);
                ra[r] = al;
                rl[r] = rl[r] * al + sum;
                rm[r] = mn;
            }
        }
        __syncthreads();
        load_tile(kv, a.vtype, a.vc, a.vrow, c0, n, kct, g, hd);
        __syncthreads();
    FA_UNROLL
        for (int j = 0; j < FA_ACC; j++) {
            const int k = tid + j * FA_THREADS;
            if (k < R * hd) {
                const int r = k / hd, d = k % hd;
                const float *w = S + r * kct;
                float v = acc[j] * ra[r];
                for (int c = 0; c < n; c++)
                    v += w[c] * kv[c * (hd + 1) + d];
                acc[j] = v;
            }
        }
    }
    __syncthreads();
    FA_UNROLL
    for (int j = 0; j < FA_ACC; j++) {
        const int k = tid + j * FA_THREADS;
        if (k >= R * hd)
            continue;
        const int r = k / hd, d = k % hd, t = t0 + r / group, h = g * group + r % group;
        if (t >= a.T)
            continue;
        const int64_t row = (int64_t)t * a.n_head + h;
        if (a.part) { /* one split's share: unnormalized, with its max and sum */
            float *pr = a.part + ((int64_t)blockIdx.y * a.T * a.n_head + row) * (hd + 2);
            pr[d] = acc[j];
            if (d == 0) {
                pr[hd] = rm[r];
                pr[hd + 1] = rl[r];
            }
            continue;
        }
        float m = rm[r], l = rl[r], o = acc[j];
        if (a.sinks) { /* the sink joins the denominator only */
            const float sk = a.sinks[h], M = fmaxf(m, sk);
            const float f = m == -INFINITY ? 0.0f : __expf(m - M);
            l = l * f + __expf(sk - M);
            o *= f;
        }
        a.dst[row * hd + d] = l > 0.0f ? o / l : 0.0f;
    }
}

/* The split runs' rows combined: one block per (token, head), threads over head_dim. */
__global__ void k_fattn_combine(const float *part, float *dst, int n_split, int64_t rows,
                                int hd, int n_head, const float *sinks) {
    const int64_t row = blockIdx.x;
    const int h = (int)(row % n_head);
    float M = sinks ? sinks[h] : -INFINITY;
    for (int s = 0; s < n_split; s++)
        M = fmaxf(M, part[((int64_t)s * rows + row) * (hd + 2) + hd]);
    float L = sinks && M != -INFINITY ? __expf(sinks[h] - M) : 0.0f;
    for (int s = 0; s < n_split; s++) {
        const float *pr = part + ((int64_t)s * rows + row) * (hd + 2);
        if (pr[hd] != -INFINITY)
            L += pr[hd + 1] * __expf(pr[hd] - M);
    }
    for (int d = threadIdx.x; d < hd; d += blockDim.x) {
        float o = 0.0f;
        for (int s = 0; s < n_split; s++) {
            const float *pr = part + ((int64_t)s * rows + row) * (hd + 2);
            if (pr[hd] != -INFINITY)
                o += pr[d] * __expf(pr[hd] - M);
        }
        dst[row * hd + d] = L > 0.0f ? o / L : 0.0f;
    }
}

/* bytes of k_fattn's dynamic shared memory */
static size_t fa_smem(int R, int kct, int hd) {
    return ((size_t)R * hd + (size_t)kct * (hd + 1) + (size_t)R * kct + 3 * (size_t)R) *
               sizeof(float) + ((size_t)kct + R) * sizeof(int);
}

bool mx_cu_fattn_ok(int head_dim, int group) {
    return head_dim % 4 == 0 && head_dim <= 256 && group >= 1 &&
           group <= (FA_QVALS / head_dim < FA_MAXR ? FA_QVALS / head_dim : FA_MAXR);
}

int mx_cu_fattn(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *q,
                const struct mx_tensor *kc, const struct mx_tensor *vc,
                const struct mx_tensor *qpos, const struct mx_tensor *kpos,
                const struct mx_attn_params *p, int round_q) {
    struct cu_ctx *c = cu(be);
    const int hd = p->head_dim, group = p->n_head / p->n_head_kv, T = (int)q->ne[2];
    int rmax = FA_QVALS / hd < FA_MAXR ? FA_QVALS / hd : FA_MAXR;
    struct fa_args a;
    a.dst = (float *)dst->data;
    a.part = NULL;
    a.q = (const float *)q->data;
    a.kc = (const uint8_t *)kc->data;
    a.vc = (const uint8_t *)vc->data;
    a.krow = kc->nb[1];
    a.vrow = vc->nb[1];
    a.qpos = (const int32_t *)qpos->data;
    a.kpos = (const int32_t *)kpos->data;
    a.sinks = p->sinks ? (const float *)p->sinks->data : NULL;
    a.n_kv = p->n_kv;
    a.ktype = (int)kc->type;
    a.vtype = (int)vc->type;
    a.T = T;
    a.n_head = p->n_head;
    a.group = group;
    a.hd = hd;
    a.qt = rmax / group;
    if (a.qt > T)
        a.qt = T;
    a.kc_tile = FA_QVALS / hd < FA_MAXKC ? FA_QVALS / hd : FA_MAXKC;
    a.scale = p->scale;
    a.window = p->window;
    a.round_q = round_q;
    const int R = a.qt * group;
    const unsigned blocks = (unsigned)(p->n_head_kv * ((T + a.qt - 1) / a.qt));
    /* split the cells when the blocks would not fill the card (decode) and there are many */
    int sms = 0;
    if (cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, c->device) != cudaSuccess)
        sms = 1;
    int64_t n_split = 1;
    if ((int64_t)blocks < 2 * sms && p->n_kv > 4 * a.kc_tile) {
        n_split = (2 * sms + blocks - 1) / blocks;
        int64_t most = (p->n_kv + 4 * a.kc_tile - 1) / (4 * a.kc_tile); /* >= 4 tiles each */
        if (n_split > most)
            n_split = most;
        if (n_split > 65535)
            n_split = 65535;
    }
    int64_t cps = (p->n_kv + n_split - 1) / n_split;
    cps = (cps + a.kc_tile - 1) / a.kc_tile * a.kc_tile;
    n_split = (p->n_kv + cps - 1) / cps;
    a.cells_per_split = cps;
    const int64_t rows = (int64_t)T * p->n_head;
    if (n_split > 1) {
        a.part = mx_cu_work(be, (size_t)(n_split * rows) * (size_t)(hd + 2) * sizeof(float));
        if (!a.part)
            return MX_ENOMEM;
    }
    dim3 grid(blocks, (unsigned)n_split);
    MX_LAUNCH(k_fattn, grid, FA_THREADS, fa_smem(R, a.kc_tile, hd), c->stream)(a);
    int rc = mx_cu_check(be, "attn: flash kernel");
    if (rc < 0 || n_split == 1)
        return rc;
    MX_LAUNCH(k_fattn_combine, (unsigned)rows, hd < 128 ? 64 : 128, 0, c->stream)(
        a.part, a.dst, (int)n_split, rows, hd, p->n_head, a.sinks);
    return mx_cu_check(be, "attn: combining the splits");
}
