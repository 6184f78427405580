/* main.c - the front door: global flags, then dispatch to a subcommand (cli/cmd_*.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "cli/cmd.h"
#include "cli/opts.h"

struct cmd {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *help;
};

static const struct cmd commands[] = {
#define MX_CMD_ENTRY(name, help) {#name, mx_cmd_##name, help},
    MX_CMD_LIST(MX_CMD_ENTRY)
#undef MX_CMD_ENTRY
};

static void usage(FILE *f) {
    fprintf(f,
            "usage: mixel [COMMAND] [OPTIONS]\n"
            "\n"
            "Chat with local mixture-of-experts LLMs and draw Stable Diffusion images in the\n"
            "terminal. With no command, mixel starts the chat TUI.\n"
            "\n"
            "commands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-11s %s%s\n", commands[i].name, commands[i].help,
                commands[i].fn ? "" : " [not in this build yet]");
    fprintf(f,
            "\n"
            "options:\n"
            "  -h, --help     this help; `mixel COMMAND --help` for a command's options\n"
            "  -V, --version  version and build features\n"
            "\n"
            "Config: $XDG_CONFIG_HOME/mixel (~/.config/mixel; settings in config.json, or\n"
            "$MIXEL_CONFIG). Data: $XDG_DATA_HOME/mixel (~/.local/share/mixel). NO_COLOR is\n"
            "honoured. See mixel(1).\n"
            "\n"
            "Source layout: cli/ (these commands), tui/ (the chat) and net/ (serve, remote, pull)\n"
            "sit on app/ (the engine layer they share), which uses history/ (sessions), core/\n"
            "(formats, text, llm, diffusion, image; core/base is the ground floor) and\n"
            "kernels/ (cpu, cuda).\n");
}

static void version(void) {
    printf("mixel %s\n", PACKAGE_VERSION);
    printf("features:");
#ifdef HAVE_CUDA
    printf(" cuda");
#endif
#ifdef HAVE_SIXEL
    printf(" sixel");
#endif
#ifdef HAVE_AVX2_BUILD
    printf(" avx2");
#endif
    printf(" openblas sqlite\n");
}

int main(int argc, char **argv) {
    const char *name = "chat";
    int sub_argc = argc;
    char **sub_argv = argv;
    if (argc > 1) {
        const char *a = argv[1];
        if (!strcmp(a, "-h") || !strcmp(a, "--help") || !strcmp(a, "help")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(a, "-V") || !strcmp(a, "--version")) {
            version();
            return 0;
        }
        if (a[0] != '-') {
            name = a;
            sub_argc = argc - 1;
            sub_argv = argv + 1;
        }
    }
    if (!strcmp(name, "models")) /* the alias ollama users type */
        name = "list";
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        if (strcmp(commands[i].name, name) != 0)
            continue;
        if (!commands[i].fn) {
            fprintf(stderr, "mixel: '%s' is not in this build yet (see mixel --help)\n",
                    mx_safe(name));
            return 2;
        }
        return commands[i].fn(sub_argc, sub_argv);
    }
    fprintf(stderr, "mixel: unknown command '%s' (see mixel --help)\n", mx_safe(name));
    return 2;
}
