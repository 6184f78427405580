/* cpuinfo.c - run-time CPU feature detection (CPUID + XGETBV on x86, hwcaps on ARM) so kernels
 * can be dispatched per machine from one binary. */
#include "kernels/devinfo.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>

static unsigned long long xgetbv0(void) {
    unsigned int eax, edx;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return ((unsigned long long)edx << 32) | eax;
}

static void detect_x86(struct mx_cpu_info *info) {
    unsigned int a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d))
        return;
    info->sse3 = c & (1u << 0);
    info->ssse3 = c & (1u << 9);
    bool fma = c & (1u << 12);
    bool osxsave = c & (1u << 27);
    bool avx = c & (1u << 28);
    bool f16c = c & (1u << 29);
    /* AVX state must be enabled by the OS (XCR0 bits 1,2), AVX-512 state too (bits 5,6,7). */
    unsigned long long xcr0 = osxsave ? xgetbv0() : 0;
    bool os_avx = (xcr0 & 0x6) == 0x6;
    bool os_avx512 = (xcr0 & 0xe6) == 0xe6;
    info->avx = avx && os_avx;
    info->fma = fma && os_avx;
    info->f16c = f16c && os_avx;
    if (__get_cpuid_count(7, 0, &a, &b, &c, &d)) {
        info->avx2 = (b & (1u << 5)) && os_avx;
        info->avx512f = (b & (1u << 16)) && os_avx512;
        info->avx512bw = (b & (1u << 30)) && os_avx512;
        info->avx512vl = (b & (1u << 31)) && os_avx512;
        info->avx512vnni = (c & (1u << 11)) && os_avx512;
    }
    if (__get_cpuid_count(7, 1, &a, &b, &c, &d))
        info->avx_vnni = (a & (1u << 4)) && os_avx;
    /* Brand string: CPUID 0x80000002..4 */
    unsigned int brand[12];
    if (__get_cpuid(0x80000000, &a, &b, &c, &d) && a >= 0x80000004) {
        for (unsigned int i = 0; i < 3; i++)
            __get_cpuid(0x80000002 + i, &brand[i * 4], &brand[i * 4 + 1], &brand[i * 4 + 2],
                        &brand[i * 4 + 3]);
        char s[49];
        memcpy(s, brand, 48);
        s[48] = '\0';
        const char *p = s;
        while (*p == ' ')
            p++;
        snprintf(info->model, sizeof info->model, "%s", p);
    }
}
#endif

#if defined(__aarch64__)
#include <sys/auxv.h>
#endif

/* Physical cores: distinct (physical id, core id) pairs in /proc/cpuinfo. */
static int count_physical_cores(void) {
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f)
        return 0;
    int pairs[1024][2];
    int n = 0, phys = 0, core = -1;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        if (sscanf(line, "physical id : %d", &phys) == 1)
            continue;
        if (sscanf(line, "core id : %d", &core) == 1) {
            bool seen = false;
            for (int i = 0; i < n; i++)
                if (pairs[i][0] == phys && pairs[i][1] == core)
                    seen = true;
            if (!seen && n < 1024) {
                pairs[n][0] = phys;
                pairs[n][1] = core;
                n++;
            }
        }
    }
    fclose(f);
    return n;
}

void mx_cpu_info_get(struct mx_cpu_info *info) {
    memset(info, 0, sizeof *info);
    long nl = sysconf(_SC_NPROCESSORS_ONLN);
    info->n_logical = nl > 0 ? (int)nl : 1;
    int np = count_physical_cores();
    info->n_physical = (np > 0 && np <= info->n_logical) ? np : info->n_logical;
#if defined(__x86_64__) || defined(__i386__)
    detect_x86(info);
#elif defined(__aarch64__)
    info->neon = true; /* mandatory on AArch64 */
#endif
    if (!info->model[0]) {
        FILE *f = fopen("/proc/cpuinfo", "r");
        char line[512];
        while (f && fgets(line, sizeof line, f)) {
            char *colon = strchr(line, ':');
            if (colon && (!strncmp(line, "model name", 10) || !strncmp(line, "Model", 5))) {
                colon++;
                while (*colon == ' ')
                    colon++;
                colon[strcspn(colon, "\n")] = '\0';
                snprintf(info->model, sizeof info->model, "%s", colon);
                break;
            }
        }
        if (f)
            fclose(f);
    }
    if (!info->model[0])
        snprintf(info->model, sizeof info->model, "unknown CPU");
}

void mx_cpu_features_str(const struct mx_cpu_info *info, char *buf, size_t size) {
    static const struct { size_t off; const char *name; } feats[] = {
        {offsetof(struct mx_cpu_info, sse3), "SSE3"},
        {offsetof(struct mx_cpu_info, ssse3), "SSSE3"},
        {offsetof(struct mx_cpu_info, avx), "AVX"},
        {offsetof(struct mx_cpu_info, avx2), "AVX2"},
        {offsetof(struct mx_cpu_info, fma), "FMA"},
        {offsetof(struct mx_cpu_info, f16c), "F16C"},
        {offsetof(struct mx_cpu_info, avx_vnni), "AVX-VNNI"},
        {offsetof(struct mx_cpu_info, avx512f), "AVX-512F"},
        {offsetof(struct mx_cpu_info, avx512bw), "AVX-512BW"},
        {offsetof(struct mx_cpu_info, avx512vl), "AVX-512VL"},
        {offsetof(struct mx_cpu_info, avx512vnni), "AVX-512-VNNI"},
        {offsetof(struct mx_cpu_info, neon), "NEON"},
    };
    size_t len = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < sizeof feats / sizeof feats[0]; i++) {
        if (!*((const bool *)((const char *)info + feats[i].off)))
            continue;
        int w = snprintf(buf + len, size - len, "%s%s", len ? " " : "", feats[i].name);
        if (w < 0 || (size_t)w >= size - len)
            break;
        len += (size_t)w;
    }
    if (!len)
        snprintf(buf, size, "(none)");
}
