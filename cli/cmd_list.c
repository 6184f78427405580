/* cmd_list.c - `mixel list` (alias `mixel models`): the GGUF models model discovery finds on
 * this machine (app/discover.c: ~/models, the Hugging Face cache, ollama, LM Studio, the current
 * folder), newest first, with the name -m accepts, what the header says and the path; then, in a
 * section of their own, the Stable Diffusion checkpoints (A1111/Forge, ComfyUI, the Hugging Face
 * cache, ~/models, the current folder). Names and paths are untrusted bytes: mx_discover_print
 * shows control bytes inert. */
#include <stdio.h>
#include <string.h>

#include "cli/cmd.h"
#include "cli/opts.h"
#include "app/discover.h"

int mx_cmd_list(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: mixel list   (alias: mixel models)\n"
                   "The GGUF models found in ~/models, the Hugging Face cache, ollama, LM Studio\n"
                   "and the current folder, newest first. Each name works as -m NAME for chat,\n"
                   "run, bench and logits.\n"
                   "Then the Stable Diffusion checkpoints (.safetensors and diffusers folders) in\n"
                   "stable-diffusion-webui(-forge)/models/Stable-diffusion, ComfyUI/models/\n"
                   "checkpoints, the Hugging Face cache, ~/models and the current folder.\n");
            return 0;
        }
        mx_cli_err("list", "unexpected argument '%s' (see mixel list --help)",
                mx_safe(argv[i]));
        return 2;
    }
    return mx_discover_print(stdout) < 0 ? 1 : 0;
}
