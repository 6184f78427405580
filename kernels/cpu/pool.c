/* pool.c - the CPU backend's persistent thread pool.
 *
 * Workers are created once with the backend and reused for every op: an LLM decode step runs a
 * few hundred small ops, so creating threads per op (tens of microseconds each) would dominate.
 * A dispatch bumps a generation counter; workers spin on it briefly (ops follow each other within
 * microseconds during a forward pass) and then sleep on a condition variable so an idle engine
 * costs no CPU. The caller works as thread 0 and then waits for the others the same way.
 * Tuned for 2-16 threads; the spin is short because cores may be shared with other processes.
 * mx_pool_run_units adds work stealing at the end of a static split: on a shared machine one
 * descheduled thread would otherwise make every op wait for it.
 */
#include "kernels/cpu/cpu.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#else
#define CPU_RELAX() ((void)0)
#endif

/* Spin iterations before sleeping: a pause is 40-140 cycles, so this is some 50-150 us, enough
 * to bridge consecutive ops of a forward pass (a few us apart) without burning a shared core for
 * long when the engine goes idle. */
#define MX_POOL_SPIN 4000

/* One thread's range of units for mx_pool_run_units: front in the low 32 bits (the owner
 * takes units there), back in the high 32 (thieves take units below it); empty when
 * front >= back. A cache line each so the owners' claims do not bounce between cores. */
struct unit_range {
    _Alignas(64) atomic_uint_fast64_t fb;
};

struct mx_pool {
    int nth;
    struct unit_range *ranges; /* [nth] */
    pthread_t *threads;       /* [nth - 1] */
    pthread_mutex_t mu;
    pthread_cond_t cv_work;   /* generation changed or stop */
    pthread_cond_t cv_done;   /* the last worker finished */
    atomic_uint gen;          /* bumped per dispatch */
    atomic_int n_done;        /* workers finished with the current generation */
    atomic_bool stop;
    mx_pool_fn fn;            /* current task (written before gen is bumped) */
    void *args;
    /* mx_pool_run_units' current task (in args while it runs) */
    mx_pool_unit_fn ufn;
    void *uargs;
    const int64_t *bounds;    /* [nth + 1] the owners' ranges */
    bool steal;               /* ranges holds them (else each thread runs its own only) */
};

struct worker_arg {
    struct mx_pool *pool;
    int ith;
};

static void *worker_main(void *p) {
    struct worker_arg wa = *(struct worker_arg *)p;
    free(p);
    struct mx_pool *pool = wa.pool;
    unsigned seen = 0;
    for (;;) {
        unsigned g;
        int spins = 0;
        while ((g = atomic_load_explicit(&pool->gen, memory_order_acquire)) == seen &&
               !atomic_load_explicit(&pool->stop, memory_order_acquire) && spins < MX_POOL_SPIN) {
            CPU_RELAX();
            spins++;
        }
        if (g == seen && !atomic_load(&pool->stop)) {
            pthread_mutex_lock(&pool->mu);
            while ((g = atomic_load(&pool->gen)) == seen && !atomic_load(&pool->stop))
                pthread_cond_wait(&pool->cv_work, &pool->mu);
            pthread_mutex_unlock(&pool->mu);
        }
        if (atomic_load(&pool->stop))
            return NULL;
        seen = g;
        pool->fn(pool->args, wa.ith, pool->nth);
        if (atomic_fetch_add_explicit(&pool->n_done, 1, memory_order_acq_rel) + 1 ==
            pool->nth - 1) {
            pthread_mutex_lock(&pool->mu);
            pthread_cond_signal(&pool->cv_done);
            pthread_mutex_unlock(&pool->mu);
        }
    }
}

int mx_pool_new(int n_threads, struct mx_pool **out) {
    *out = NULL;
    if (n_threads < 1 || n_threads > 1024)
        return MX_EINVAL;
    struct mx_pool *pool = calloc(1, sizeof *pool);
    if (!pool)
        return MX_ENOMEM;
    pool->nth = n_threads;
    pthread_mutex_init(&pool->mu, NULL);
    pthread_cond_init(&pool->cv_work, NULL);
    pthread_cond_init(&pool->cv_done, NULL);
    atomic_init(&pool->gen, 0);
    atomic_init(&pool->n_done, 0);
    atomic_init(&pool->stop, false);
    pool->ranges = aligned_alloc(64, (size_t)n_threads * sizeof *pool->ranges);
    if (!pool->ranges) {
        pool->nth = 1;
        mx_pool_free(pool);
        return MX_ENOMEM;
    }
    if (n_threads > 1) {
        pool->threads = calloc((size_t)n_threads - 1, sizeof *pool->threads);
        if (!pool->threads) {
            pool->nth = 1;
            mx_pool_free(pool);
            return MX_ENOMEM;
        }
    }
    for (int i = 1; i < n_threads; i++) {
        struct worker_arg *wa = malloc(sizeof *wa);
        if (wa) {
            wa->pool = pool;
            wa->ith = i;
        }
        if (!wa || pthread_create(&pool->threads[i - 1], NULL, worker_main, wa) != 0) {
            free(wa);
            pool->nth = i; /* join only the ones started */
            mx_pool_free(pool);
            return wa ? MX_EIO : MX_ENOMEM;
        }
    }
    *out = pool;
    return 0;
}

void mx_pool_free(struct mx_pool *pool) {
    if (!pool)
        return;
    pthread_mutex_lock(&pool->mu);
    atomic_store(&pool->stop, true);
    pthread_cond_broadcast(&pool->cv_work);
    pthread_mutex_unlock(&pool->mu);
    for (int i = 1; i < pool->nth; i++)
        pthread_join(pool->threads[i - 1], NULL);
    pthread_cond_destroy(&pool->cv_work);
    pthread_cond_destroy(&pool->cv_done);
    pthread_mutex_destroy(&pool->mu);
    free(pool->threads);
    free(pool->ranges);
    free(pool);
}

int mx_pool_n_threads(const struct mx_pool *pool) {
    return pool->nth;
}

void mx_pool_run(struct mx_pool *pool, mx_pool_fn fn, void *args) {
    if (pool->nth == 1) {
        fn(args, 0, 1);
        return;
    }
    pool->fn = fn;
    pool->args = args;
    atomic_store_explicit(&pool->n_done, 0, memory_order_relaxed);
    pthread_mutex_lock(&pool->mu);
    atomic_fetch_add_explicit(&pool->gen, 1, memory_order_release);
    pthread_cond_broadcast(&pool->cv_work);
    pthread_mutex_unlock(&pool->mu);

    fn(args, 0, pool->nth);

    int spins = 0;
    while (atomic_load_explicit(&pool->n_done, memory_order_acquire) != pool->nth - 1 &&
           spins < MX_POOL_SPIN) {
        CPU_RELAX();
        spins++;
    }
    if (atomic_load_explicit(&pool->n_done, memory_order_acquire) != pool->nth - 1) {
        pthread_mutex_lock(&pool->mu);
        while (atomic_load(&pool->n_done) != pool->nth - 1)
            pthread_cond_wait(&pool->cv_done, &pool->mu);
        pthread_mutex_unlock(&pool->mu);
    }
}

static inline uint64_t fb_pack(uint64_t front, uint64_t back) {
    return front | back << 32;
}

/* Takes the next unit of range r from its front (owner) or its back (thief). Returns the unit
 * or -1 when the range is empty. */
static int64_t range_take(struct unit_range *r, bool front) {
    uint64_t v = atomic_load_explicit(&r->fb, memory_order_relaxed);
    for (;;) {
        uint64_t f = v & 0xffffffffu, b = v >> 32;
        if (f >= b)
            return -1;
        uint64_t nv = front ? fb_pack(f + 1, b) : fb_pack(f, b - 1);
        if (atomic_compare_exchange_weak_explicit(&r->fb, &v, nv, memory_order_relaxed,
                                                  memory_order_relaxed))
            return (int64_t)(front ? f : b - 1);
    }
}

/* Thread ith's part of mx_pool_run_units: its own range front to back, then the others'
 * leftovers from their backs (the next thread's first), so a thread that was descheduled on a
 * shared machine, or got slower units, does not hold the barrier for the whole op. */
static void units_run(void *args, int ith, int nth) {
    struct mx_pool *pool = args;
    if (!pool->steal) {
        for (int64_t u = pool->bounds[ith]; u < pool->bounds[ith + 1]; u++)
            pool->ufn(pool->uargs, u, ith);
        return;
    }
    int64_t u;
    while ((u = range_take(&pool->ranges[ith], true)) >= 0)
        pool->ufn(pool->uargs, u, ith);
    for (int k = 1; k < nth; k++) {
        struct unit_range *r = &pool->ranges[(ith + k) % nth];
        while ((u = range_take(r, false)) >= 0)
            pool->ufn(pool->uargs, u, ith);
    }
}

void mx_pool_run_units(struct mx_pool *pool, mx_pool_unit_fn fn, void *args,
                       const int64_t *bounds) {
    const int nth = pool->nth;
    if (nth == 1) {
        for (int64_t u = bounds[0]; u < bounds[1]; u++)
            fn(args, u, 0);
        return;
    }
    pool->ufn = fn;
    pool->uargs = args;
    pool->bounds = bounds;
    pool->steal = bounds[nth] <= (int64_t)UINT32_MAX; /* else too many units for a range */
    for (int i = 0; i < nth && pool->steal; i++)
        atomic_store_explicit(&pool->ranges[i].fb,
                              fb_pack((uint64_t)bounds[i], (uint64_t)bounds[i + 1]),
                              memory_order_relaxed);
    mx_pool_run(pool, units_run, pool); /* its generation bump publishes the ranges */
}
