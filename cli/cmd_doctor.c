/* cmd_doctor.c - `mixel doctor`: what mixel found on this machine and in this terminal, so a user
 * (or a bug report) can see at a glance why a model runs on the CPU or an image shows as blocks.
 * Terminal queries are skipped when stdin/stdout is not a tty and are time-limited otherwise. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "history/paths.h"
#include "kernels/devices.h"
#include "kernels/devinfo.h"
#include "cli/cmd.h"
#include "cli/opts.h"
#include "app/discover.h"
#include "tui/graphics.h"
#include "tui/termquery.h"

static void doctor_terminal(void) {
    const char *term = getenv("TERM");
    printf("terminal  TERM=%s%s%s\n", term ? mx_safe(term) : "(unset)",
           getenv("TMUX") ? ", inside tmux" : "", getenv("SSH_CONNECTION") ? ", over SSH" : "");
    const char *src;
    int depth = mx_tq_colour_depth(&src);
    if (depth == 16777216)
        printf("          colours: 24-bit truecolor (%s)\n", src);
    else
        printf("          colours: %d (%s)\n", depth, src);
    /* the same time-limited probe the chat and `mixel show` use (nothing is sent without a tty) */
    struct mx_gfx g;
    struct mx_gfx_answers ans;
    mx_gfx_detect(MX_GFX_AUTO, 0, &g, &ans);
    if (!ans.tty) {
        printf("          graphics: not a terminal (stdin/stdout redirected): queries skipped\n");
        return;
    }
    if (!ans.da1_valid)
        printf("          DA1: no answer: sixel: no\n");
    else
        printf("          DA1: answered -> sixel: %s\n",
               ans.da1_sixel ? "yes (attribute 4)" : "no (no attribute 4)");
    if (ans.regs)
        printf("          sixel colour registers: %d\n", ans.regs);
    if (g.cell_known)
        printf("          cell size: %dx%d px (%s)\n", g.cell_w, g.cell_h, g.cell_src);
    else
        printf("          cell size: unknown (no pixel size from TIOCGWINSZ, CSI 16 t or 14 t)\n");
    printf("          images: %s: %s\n", mx_gfx_mode_name(g.mode), g.why);
}

static void doctor_path(const char *label, int (*fn)(char *, size_t, struct mx_err *)) {
    char path[4096];
    struct mx_err err = {0};
    if (fn(path, sizeof path, &err) != 0) {
        printf("          %s: %s\n", label, mx_safe(err.msg));
        return;
    }
    struct stat st;
    printf("          %s: %s (%s)\n", label, mx_safe(path),
           stat(path, &st) == 0 ? "exists" : "not created yet");
}

int mx_cmd_doctor(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: mixel doctor\n\nPrints the CPU's SIMD features, the BLAS library, CUDA "
                   "devices, the terminal's graphics\nanswers and the config/data paths.\n");
            return 0;
        }
        mx_cli_err("doctor", "unknown option '%s'", argv[i]);
        return 2;
    }
    printf("mixel %s doctor\n", PACKAGE_VERSION);

    struct mx_cpu_info cpu;
    mx_cpu_info_get(&cpu);
    char feats[256];
    mx_cpu_features_str(&cpu, feats, sizeof feats);
    printf("cpu       %s: %d logical, %d physical cores\n", cpu.model, cpu.n_logical,
           cpu.n_physical);
    printf("          SIMD (run time): %s\n", feats);
#ifdef HAVE_AVX2_BUILD
    bool vnni = false;
#ifdef HAVE_AVX512VNNI_BUILD
    vnni = cpu.avx512f && cpu.avx512vl && cpu.avx512bw && cpu.avx512vnni;
#endif
    printf("          kernels: %s%s\n",
           cpu.avx2 && cpu.fma && cpu.f16c ? "AVX2+FMA+F16C" : "scalar (no AVX2/FMA/F16C)",
           cpu.avx2 && cpu.fma && cpu.f16c && vnni ? ", AVX-512 VNNI prefill tiles" : "");
#else
    printf("          kernels: scalar (built without AVX2 kernels)\n");
#endif

    struct mx_blas_info blas;
    mx_blas_info_get(&blas);
    printf("blas      %s\n", blas.config);
    printf("          core %s, %d threads\n", blas.core, blas.n_threads);

    struct mx_cuda_info cuda;
    mx_cuda_info_get(&cuda);
    if (!cuda.compiled) {
        printf("cuda      %s\n", cuda.status);
    } else {
        printf("cuda      compiled in (runtime %d.%d, driver %d.%d)\n", cuda.runtime_version / 1000,
               cuda.runtime_version % 1000 / 10, cuda.driver_version / 1000,
               cuda.driver_version % 1000 / 10);
        if (cuda.n_devices == 0)
            printf("          %s: the CPU backend will be used\n", cuda.status);
        for (int i = 0; i < cuda.n_devices; i++)
            printf("          device %d: %s, compute %d.%d, %.1f GiB (%.1f GiB free), %.0f GB/s "
                   "peak memory bandwidth\n", i, mx_safe(cuda.dev[i].name), cuda.dev[i].cc_major,
                   cuda.dev[i].cc_minor, cuda.dev[i].total_mem / 1073741824.0,
                   cuda.dev[i].free_mem / 1073741824.0, cuda.dev[i].mem_bw / 1e9);
    }

    /* the registry's verdict: what `--device auto` picks, and why another device is not used */
    printf("devices   auto = %s\n", mx_device_best());
    for (int i = 0; i < mx_device_count(); i++) {
        struct mx_device d;
        if (mx_device_get(i, &d) < 0)
            continue;
        printf("          %-5s %s: %s\n", d.name, d.what, d.usable ? "usable" : d.why);
    }

    fflush(stdout);
    doctor_terminal();

    printf("paths\n");
    doctor_path("config", mx_path_config_dir);
    doctor_path("data", mx_path_data_dir);

    printf("models    (found in ~/models, the Hugging Face cache, ollama, LM Studio, here)\n");
    fflush(stdout);
    mx_discover_print(stdout);
    return 0;
}
