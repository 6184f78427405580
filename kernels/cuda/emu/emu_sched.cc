/* emu_sched.cc - the emulator's kernel execution: a launch's blocks run one after another on the
 * calling OS thread; the threads of a block are fibers (a hand-written register switch on
 * x86-64, ucontext elsewhere: swapcontext's signal-mask syscall per switch would dominate
 * barrier-heavy kernels). The scheduler runs every runnable fiber of the block in turn until it
 * exits or waits at a barrier, then releases the barriers that every participant reached:
 * a warp intrinsic when all lanes of its mask wait at it, __syncthreads when every live thread
 * of the block does. What a GPU refuses or leaves undefined is reported as an error naming the
 * kernel: bad launch geometry, too much shared memory, a __syncthreads that the live threads
 * reach at different places, a warp intrinsic whose mask names lanes that exited. A fiber that
 * exits without waiting gives its stack to the next one, so barrier-free kernels touch one
 * stack and cost two switches per thread. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <map>
#include <mutex>
#include <vector>

#include <cuda_runtime.h>
#include "kernels/cuda/emu/emu_internal.h"

#if defined(__SANITIZE_ADDRESS__)
#define MX_EMU_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MX_EMU_ASAN 1
#endif
#endif
#ifdef MX_EMU_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

#if !defined(__x86_64__)
#include <ucontext.h>
#endif

mx_emu_thread_regs mx_emu_regs;

namespace {

const size_t STACK_BYTES = (size_t)256 << 10; /* per fiber; mapped lazily by the kernel */
const unsigned MAX_THREADS = 1024;
const size_t MAX_SMEM = 48 << 10;

enum state { RUNNABLE, WAIT_SYNC, WAIT_WARP, DONE };

/* one thread of the running block */
struct fiber {
    state st;
    int stack;          /* index into stacks, -1 before its first run */
    void *sp;           /* saved stack pointer while switched out (x86-64) */
#if !defined(__x86_64__)
    ucontext_t uc;      /* saved context (other architectures) */
#endif
    uint3 tid;          /* threadIdx */
    /* what it waits at (WAIT_SYNC / WAIT_WARP) */
    const char *file;   /* the barrier's source position: its identity (a return address is
                           not: the compiler may duplicate a call site) */
    int line;
    int op;             /* sync: count/and/or kind; warp: mx_emu_warp_op */
    unsigned mask;      /* warp op's member mask */
    uint64_t val;       /* value offered (shuffle) or predicate */
    int arg, width;     /* shuffle lane/delta and segment width */
    uint64_t result;    /* what the barrier returns to it */
};

/* the block being run and the scheduler's own context */
struct block_run {
    const char *kernel;
    const std::function<void()> *body;
    std::vector<fiber> th;
    unsigned n;
    void *sched_sp;
#if !defined(__x86_64__)
    ucontext_t sched_uc;
#endif
    int cur;
    bool from_sched;    /* the running fiber was entered from the scheduler */
    bool failed;
    char msg[512];
#ifdef MX_EMU_ASAN
    const void *sched_bottom;
    size_t sched_size;
#endif
};

std::vector<char *> stacks;      /* fiber stacks, reused across blocks and launches */
std::vector<int> free_stacks;
std::vector<unsigned char> dyn;  /* the running launch's dynamic shared memory */
bool stacks_dirty;               /* an abandoned fiber left poisoned frames (ASan) */
block_run *run_;                 /* the block running now */
bool reverse_order;              /* MX_CUDA_EMU_REVERSE=1: blocks, warps and lanes run last first */
std::map<const void *, size_t> smem_optin; /* cudaFuncSetAttribute's dynamic shared memory */
std::mutex launch_lock;          /* one launch at a time: __shared__ statics are process-wide */
unsigned long long n_launches;

} // namespace

#if defined(__x86_64__)
/* mx_emu_switch(save, to): saves the callee-saved registers on the current stack, stores its
 * pointer in *save, and resumes the stack at to (System V: rbx, rbp, r12-r15 are callee-saved;
 * the FP control words are shared by all fibers of the thread and never changed here). */
extern "C" void mx_emu_switch(void **save, void *to);
__asm__(".text\n"
        ".globl mx_emu_switch\n"
        ".type mx_emu_switch,@function\n"
        "mx_emu_switch:\n"
        "    pushq %rbp\n"
        "    pushq %rbx\n"
        "    pushq %r12\n"
        "    pushq %r13\n"
        "    pushq %r14\n"
        "    pushq %r15\n"
        "    movq %rsp, (%rdi)\n"
        "    movq %rsi, %rsp\n"
        "    popq %r15\n"
        "    popq %r14\n"
        "    popq %r13\n"
        "    popq %r12\n"
        "    popq %rbx\n"
        "    popq %rbp\n"
        "    ret\n"
        ".size mx_emu_switch,.-mx_emu_switch\n"
        ".section .note.GNU-stack,\"\",@progbits\n"
        ".text\n");
#endif

static void fiber_main();
static void to_scheduler(struct block_run *b, bool exiting);

/* Sets the message of a failure of the running block (first one wins). */
static void fail(block_run *b, const char *fmt, ...) {
    if (b->failed)
        return;
    b->failed = true;
    int k = snprintf(b->msg, sizeof b->msg, "%s: ", b->kernel);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b->msg + k, sizeof b->msg - (size_t)k, fmt, ap);
    va_end(ap);
}

/* A free fiber stack (mapped on first need). */
static int take_stack() {
    if (!free_stacks.empty()) {
        int s = free_stacks.back();
        free_stacks.pop_back();
        return s;
    }
    void *p = mmap(NULL, STACK_BYTES, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED)
        return -1;
#ifdef MX_EMU_ASAN
    /* the range may have been a thread's stack before: its stale shadow would flag our writes */
    __asan_unpoison_memory_region(p, STACK_BYTES);
#endif
    stacks.push_back((char *)p);
    return (int)stacks.size() - 1;
}

/* Gives fiber i a fresh stack that starts in fiber_main; false (and the block failed) when no
 * stack can be had. */
static bool prepare(block_run *b, unsigned i) {
    fiber &f = b->th[i];
    f.stack = take_stack();
    if (f.stack < 0) {
        fail(b, "no memory for the stack of thread %u", i);
        return false;
    }
    char *base = stacks[(size_t)f.stack];
#ifdef MX_EMU_ASAN
    /* a fiber that exited never returned from fiber_main: its frame's redzones stay poisoned at
     * the top of the stack (all of it after an abandoned block) */
    if (stacks_dirty)
        __asan_unpoison_memory_region(base, STACK_BYTES);
    else
        __asan_unpoison_memory_region(base + STACK_BYTES - 8192, 8192);
#endif
#if defined(__x86_64__)
    /* tops staggered by 64 bytes per stack: equal page offsets would fight for the same L1 sets */
    uintptr_t top = ((uintptr_t)base + STACK_BYTES - (size_t)(f.stack % 64) * 64) & ~(uintptr_t)15;
    void **sp = (void **)top - 8; /* six registers, the entry, a null return address */
    for (int k = 0; k < 6; k++)
        sp[k] = 0;
    sp[6] = (void *)&fiber_main;
    sp[7] = 0;
    f.sp = sp;
#else
    getcontext(&f.uc);
    f.uc.uc_stack.ss_sp = base;
    f.uc.uc_stack.ss_size = STACK_BYTES;
    f.uc.uc_link = NULL;
    makecontext(&f.uc, fiber_main, 0);
#endif
    return true;
}

/* Switches from the scheduler into fiber i (starting it on a stack when it has none). */
static void resume(block_run *b, unsigned i) {
    fiber &f = b->th[i];
    if (f.stack < 0 && !prepare(b, i))
        return;
    b->cur = (int)i;
    b->from_sched = true;
    mx_emu_regs.tid = f.tid;
#ifdef MX_EMU_ASAN
    void *fake = NULL;
    __sanitizer_start_switch_fiber(&fake, stacks[(size_t)f.stack], STACK_BYTES);
#endif
#if defined(__x86_64__)
    mx_emu_switch(&b->sched_sp, f.sp);
#else
    swapcontext(&b->sched_uc, &f.uc);
#endif
#ifdef MX_EMU_ASAN
    __sanitizer_finish_switch_fiber(fake, NULL, NULL);
#endif
}

#if defined(__x86_64__)
/* From the running fiber, which waits at a barrier, straight into fiber i of the same warp:
 * half the switches of going through the scheduler. */
static void chain(block_run *b, unsigned i) {
    fiber &from = b->th[(size_t)b->cur];
    fiber &f = b->th[i];
    if (f.stack < 0 && !prepare(b, i)) {
        to_scheduler(b, false);
        return;
    }
    b->cur = (int)i;
    b->from_sched = false;
    mx_emu_regs.tid = f.tid;
#ifdef MX_EMU_ASAN
    void *fake = NULL;
    __sanitizer_start_switch_fiber(&fake, stacks[(size_t)f.stack], STACK_BYTES);
#endif
    mx_emu_switch(&from.sp, f.sp);
#ifdef MX_EMU_ASAN
    __sanitizer_finish_switch_fiber(fake, NULL, NULL);
#endif
}
#endif

/* From the running fiber back to the scheduler; exiting: the fiber never resumes. */
static void to_scheduler(block_run *b, bool exiting) {
    fiber &f = b->th[(size_t)b->cur];
#ifdef MX_EMU_ASAN
    void *fake = NULL;
    __sanitizer_start_switch_fiber(exiting ? NULL : &fake, b->sched_bottom, b->sched_size);
#endif
#if defined(__x86_64__)
    void *dummy;
    mx_emu_switch(exiting ? &dummy : &f.sp, b->sched_sp);
#else
    if (exiting)
        setcontext(&b->sched_uc);
    else
        swapcontext(&f.uc, &b->sched_uc);
#endif
#ifdef MX_EMU_ASAN
    __sanitizer_finish_switch_fiber(fake, NULL, NULL);
#endif
    (void)exiting;
}

/* Every fiber starts here: runs the kernel for the thread it was given, then frees its stack. */
static void fiber_main() {
    block_run *b = run_;
#ifdef MX_EMU_ASAN
    const void *from_bottom = NULL;
    size_t from_size = 0;
    __sanitizer_finish_switch_fiber(NULL, &from_bottom, &from_size);
    if (b->from_sched) {
        b->sched_bottom = from_bottom;
        b->sched_size = from_size;
    }
#endif
    (*b->body)();
    fiber &f = b->th[(size_t)b->cur];
    f.st = DONE;
    free_stacks.push_back(f.stack); /* reused by the next fiber: this one never resumes */
    f.stack = -1;
    to_scheduler(b, true);
    __builtin_unreachable();
}

/* Parks the running fiber at a barrier until the scheduler releases it. */
static uint64_t wait_here(state st) {
    block_run *b = run_;
    if (!b) { /* called outside a kernel */
        fprintf(stderr, "mixel CUDA emulator: a barrier outside a kernel\n");
        abort();
    }
    b->th[(size_t)b->cur].st = st;
#if defined(__x86_64__)
    /* the next runnable lane of this warp runs next, without the scheduler in between */
    unsigned cur = (unsigned)b->cur, first = cur & ~31u, end = (cur | 31u) + 1;
    if (end > b->n)
        end = b->n;
    for (unsigned k = 1; k < end - first; k++) { /* the lanes after this one, in run order */
        unsigned i = reverse_order ? cur - k : cur + k;
        if (reverse_order ? cur < first + k : i >= end)
            break;
        if (b->th[i].st == RUNNABLE) {
            chain(b, i);
            mx_emu_regs.tid = b->th[(size_t)b->cur].tid;
            return b->th[(size_t)b->cur].result;
        }
    }
#endif
    to_scheduler(b, false);
    mx_emu_regs.tid = b->th[(size_t)b->cur].tid;
    return b->th[(size_t)b->cur].result;
}

int mx_emu_syncthreads(int op, int pred, const char *file, int line) {
    fiber &f = run_->th[(size_t)run_->cur];
    f.file = file;
    f.line = line;
    f.op = op;
    f.val = (uint64_t)pred;
    return (int)wait_here(WAIT_SYNC);
}

uint64_t mx_emu_warp(mx_emu_warp_op op, unsigned mask, uint64_t v,
                                               int arg, int width, const char *file, int line) {
    fiber &f = run_->th[(size_t)run_->cur];
    f.file = file;
    f.line = line;
    f.op = (int)op;
    f.mask = mask;
    f.val = v;
    f.arg = arg;
    f.width = width;
    return wait_here(WAIT_WARP);
}

unsigned mx_emu_activemask() {
    block_run *b = run_;
    unsigned base = (unsigned)b->cur & ~31u, m = 0;
    for (unsigned l = 0; l < 32 && base + l < b->n; l++)
        if (b->th[base + l].st != DONE)
            m |= 1u << l;
    return m;
}

void *mx_emu_dyn_shared() {
    return dyn.empty() ? NULL : dyn.data();
}

/* Whether two waiting fibers wait at the same barrier (same source line). */
static bool same_site(const fiber &a, const fiber &b) {
    return a.line == b.line && (a.file == b.file || strcmp(a.file, b.file) == 0);
}

/* The source lane of a shuffle for lane l of a warp (or l itself where CUDA keeps the own
 * value), following the width-segment rules of the __shfl*_sync functions. */
static unsigned shfl_src(const fiber &f, unsigned l) {
    unsigned w = (unsigned)f.width, seg = l & ~(w - 1);
    switch ((mx_emu_warp_op)f.op) {
    case MX_EMU_SHFL: return seg + ((unsigned)f.arg & (w - 1));
    case MX_EMU_SHFL_UP: return (int)(l - seg) - f.arg < 0 ? l : l - (unsigned)f.arg;
    case MX_EMU_SHFL_DOWN: return (l - seg) + (unsigned)f.arg >= w ? l : l + (unsigned)f.arg;
    case MX_EMU_SHFL_XOR: {
        unsigned s = l ^ (unsigned)f.arg;
        return s >= seg + w ? l : s; /* later segments are out of reach: own value */
    }
    default: return l;
    }
}

/* Releases the warp intrinsics of the warp at thread base whose every member waits; returns how
 * many lanes it released. */
static unsigned release_warp(block_run *b, unsigned base) {
    unsigned released = 0;
    {
        unsigned nl = b->n - base < 32 ? b->n - base : 32;
        unsigned handled = 0;
        for (unsigned l = 0; l < nl; l++) {
            fiber &f = b->th[base + l];
            if (f.st != WAIT_WARP || (handled >> l & 1))
                continue;
            unsigned m = f.mask;
            if (!(m >> l & 1)) {
                fail(b, "thread %u calls a warp intrinsic (%s:%d) with mask 0x%08x that leaves "
                        "out its own lane %u", base + l, f.file, f.line, m, l);
                return released;
            }
            bool ready = true;
            for (unsigned k = 0; k < 32; k++) {
                if (!(m >> k & 1))
                    continue;
                if (k >= nl || b->th[base + k].st == DONE) {
                    fail(b, "warp intrinsic at %s:%d in thread %u: mask 0x%08x names lane %u, "
                            "which %s", f.file, f.line, base + l, m, k,
                         k >= nl ? "does not exist (the block has fewer threads)" : "has exited");
                    return released;
                }
                const fiber &g = b->th[base + k];
                if (g.st != WAIT_WARP) {
                    ready = false;
                    continue;
                }
                if (!same_site(g, f) || g.op != f.op || g.mask != m || g.width != f.width) {
                    fail(b, "lanes %u and %u of warp %u meet different warp intrinsics (%s:%d "
                            "and %s:%d) under one mask 0x%08x", l, k, base / 32, f.file, f.line,
                         g.file, g.line, m);
                    return released;
                }
            }
            if (!ready)
                continue;
            unsigned w = (unsigned)f.width;
            if (w == 0 || w > 32 || (w & (w - 1))) {
                fail(b, "shuffle width %u at %s:%d is not a power of two up to 32", w, f.file,
                     f.line);
                return released;
            }
            unsigned ballot = 0;
            for (unsigned k = 0; k < 32; k++)
                if ((m >> k & 1) && b->th[base + k].val)
                    ballot |= 1u << k;
            for (unsigned k = 0; k < 32; k++) {
                if (!(m >> k & 1))
                    continue;
                fiber &g = b->th[base + k];
                if (f.op == MX_EMU_BALLOT) {
                    g.result = ballot;
                } else if (f.op == MX_EMU_SYNCWARP) {
                    g.result = 0;
                } else {
                    unsigned s = shfl_src(g, k);
                    if (!(m >> (s & 31) & 1) || s >= nl) {
                        fail(b, "lane %u of warp %u reads lane %u in a shuffle at %s:%d, outside "
                                "the mask 0x%08x (undefined on a GPU)", k, base / 32, s, f.file,
                             f.line, m);
                        return released;
                    }
                    g.result = b->th[base + s].val;
                }
            }
            for (unsigned k = 0; k < 32; k++)
                if (m >> k & 1) {
                    b->th[base + k].st = RUNNABLE;
                    handled |= 1u << k;
                    released++;
                }
        }
    }
    return released;
}

/* Releases __syncthreads when every live thread waits at the same one; else reports the
 * divergence that would hang or corrupt a GPU block. */
static bool release_block(block_run *b) {
    const fiber *first = NULL;
    unsigned count = 0, live = 0;
    for (unsigned i = 0; i < b->n; i++) {
        const fiber &f = b->th[i];
        if (f.st == DONE)
            continue;
        live++;
        if (f.st == WAIT_WARP) {
            fail(b, "thread %u waits in a warp intrinsic at %s:%d whose other lanes never come "
                    "(they wait at __syncthreads or diverge)", i, f.file, f.line);
            return false;
        }
        if (!first)
            first = &f;
        else if (!same_site(f, *first)) {
            fail(b, "divergent __syncthreads: thread %u waits at %s:%d, thread %u at %s:%d",
                 (unsigned)(first - b->th.data()), first->file, first->line, i, f.file, f.line);
            return false;
        }
        if (f.val)
            count++;
    }
    if (!first)
        return true;
    for (unsigned i = 0; i < b->n; i++) {
        fiber &f = b->th[i];
        if (f.st == DONE)
            continue;
        f.result = first->op == 1 ? count : first->op == 2 ? count == live : first->op == 3
                                                                                 ? count > 0
                                                                                 : 0;
        f.st = RUNNABLE;
    }
    return true;
}

/* Runs one block to completion (or to its first failure): warp after warp, each until its lanes
 * exit or wait at __syncthreads (its warp intrinsics released as soon as all members wait, so
 * 32 fiber stacks are hot at a time), then the block barrier. */
static void run_block(block_run *b) {
    for (;;) {
        unsigned nw = (b->n + 31) / 32;
        for (unsigned wi = 0; wi < nw && !b->failed; wi++) {
            unsigned base = (reverse_order ? nw - 1 - wi : wi) * 32;
            unsigned nl = b->n - base < 32 ? b->n - base : 32;
            for (;;) {
                bool any = false;
                for (unsigned li = 0; li < nl && !b->failed; li++) {
                    unsigned l = reverse_order ? nl - 1 - li : li;
                    if (b->th[base + l].st == RUNNABLE) {
                        any = true;
                        resume(b, base + l);
                    }
                }
                if (!any || b->failed || release_warp(b, base) == 0)
                    break;
            }
        }
        if (b->failed)
            break;
        bool live = false;
        for (unsigned i = 0; i < b->n && !live; i++)
            live = b->th[i].st != DONE;
        if (!live || !release_block(b))
            break;
    }
}

/* Abandons the fibers of a failed block: their stacks go back to the pool. */
static void abandon(block_run *b) {
    for (fiber &f : b->th)
        if (f.stack >= 0) {
            free_stacks.push_back(f.stack);
            f.stack = -1;
            stacks_dirty = true;
        }
}

/* Checks the geometry as the GPU does at launch; a message on failure. */
static bool check_config(const char *name, const void *fn, dim3 g, dim3 bl, size_t smem, char *msg,
                         size_t n) {
    size_t smem_max = MAX_SMEM;
    {
        std::lock_guard<std::mutex> lock(launch_lock);
        auto it = smem_optin.find(fn);
        if (it != smem_optin.end() && it->second > smem_max)
            smem_max = it->second;
    }
    unsigned long long threads = (unsigned long long)bl.x * bl.y * bl.z;
    if (g.x == 0 || g.y == 0 || g.z == 0)
        snprintf(msg, n, "%s: launch with an empty grid (%u x %u x %u blocks)", name, g.x, g.y,
                 g.z);
    else if (threads == 0)
        snprintf(msg, n, "%s: launch with empty blocks (%u x %u x %u threads)", name, bl.x, bl.y,
                 bl.z);
    else if (threads > MAX_THREADS || bl.x > 1024 || bl.y > 1024 || bl.z > 64)
        snprintf(msg, n, "%s: block of %u x %u x %u threads (a GPU allows 1024 in all, z <= 64)",
                 name, bl.x, bl.y, bl.z);
    else if (g.x > 0x7fffffffu || g.y > 65535 || g.z > 65535)
        snprintf(msg, n, "%s: grid of %u x %u x %u blocks (y and z at most 65535)", name, g.x,
                 g.y, g.z);
    else if (smem > smem_max)
        snprintf(msg, n, "%s: %zu bytes of dynamic shared memory (the kernel may use %zu: 48 KiB "
                         "unless cudaFuncSetAttribute opts it in to more)", name, smem, smem_max);
    else
        return true;
    return false;
}

cudaError_t mx_emu_func_set_attribute(const void *fn, cudaFuncAttribute a, int v) {
    if (a == cudaFuncAttributePreferredSharedMemoryCarveout)
        return v >= -1 && v <= 100 ? cudaSuccess : cudaErrorInvalidValue;
    if (a != cudaFuncAttributeMaxDynamicSharedMemorySize || v < 0 ||
        (size_t)v > MX_EMU_SMEM_OPTIN) {
        char msg[160];
        snprintf(msg, sizeof msg, "cudaFuncSetAttribute: %d bytes of dynamic shared memory "
                                  "(the device allows %zu)", v, MX_EMU_SMEM_OPTIN);
        mx_emu_set_error(cudaErrorInvalidValue, msg, false);
        return cudaErrorInvalidValue;
    }
    std::lock_guard<std::mutex> lock(launch_lock);
    smem_optin[fn] = (size_t)v;
    return cudaSuccess;
}

cudaError_t mx_emu_run_grid(const char *name, const void *fn, dim3 g, dim3 bl, size_t smem,
                            const std::function<void()> &body) {
    char msg[600]; /* the block's message and its coordinates */
    if (!check_config(name, fn, g, bl, smem, msg, sizeof msg)) {
        mx_emu_set_error(cudaErrorInvalidConfiguration, msg, false);
        return cudaErrorInvalidConfiguration;
    }
    std::lock_guard<std::mutex> lock(launch_lock);
    n_launches++;
    block_run b;
    b.kernel = name;
    b.body = &body;
    b.n = bl.x * bl.y * bl.z;
    b.th.resize(b.n);
    b.failed = false;
    b.msg[0] = 0;
    b.cur = 0;
#ifdef MX_EMU_ASAN
    b.sched_bottom = NULL;
    b.sched_size = 0;
#endif
    /* dynamic shared memory: exactly smem bytes in its own allocation, so ASan sees a kernel
     * that reads past it; fresh garbage per launch, as a GPU gives no zeroes */
    std::vector<unsigned char>().swap(dyn);
    if (smem)
        dyn.assign(smem, 0xa5);
    mx_emu_thread_regs saved = mx_emu_regs;
    block_run *saved_run = run_;
    run_ = &b;
    mx_emu_regs.bdim = uint3{bl.x, bl.y, bl.z};
    mx_emu_regs.gdim = uint3{g.x, g.y, g.z};
    const char *rev = getenv("MX_CUDA_EMU_REVERSE");
    reverse_order = rev && strcmp(rev, "1") == 0;
    for (unsigned zi = 0; zi < g.z && !b.failed; zi++)
        for (unsigned yi = 0; yi < g.y && !b.failed; yi++)
            for (unsigned xi = 0; xi < g.x && !b.failed; xi++) {
                unsigned x = reverse_order ? g.x - 1 - xi : xi;
                unsigned y = reverse_order ? g.y - 1 - yi : yi;
                unsigned z = reverse_order ? g.z - 1 - zi : zi;
                mx_emu_regs.bid = uint3{x, y, z};
                unsigned i = 0;
                for (unsigned tz = 0; tz < bl.z; tz++)
                    for (unsigned ty = 0; ty < bl.y; ty++)
                        for (unsigned tx = 0; tx < bl.x; tx++, i++) {
                            fiber &f = b.th[i];
                            f.st = RUNNABLE;
                            f.stack = -1;
                            f.tid = uint3{tx, ty, tz};
                            f.val = 0;
                        }
                run_block(&b);
                if (b.failed)
                    snprintf(msg, sizeof msg, "%s (block %u,%u,%u)", b.msg, x, y, z);
            }
    if (b.failed)
        abandon(&b);
    run_ = saved_run;
    mx_emu_regs = saved;
    if (b.failed) {
        mx_emu_set_error(cudaErrorLaunchFailure, msg, true);
        return cudaErrorLaunchFailure;
    }
    return cudaSuccess;
}

unsigned long long mx_emu_launch_count() {
    return n_launches;
}
